"""evaluation: eval runs, outputs, human labels, blind pair votes

Revision ID: 0007_eval
Revises: 0002
"""
import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = '0007_eval'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('eval_run',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
    sa.Column('suite', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
    sa.Column('suite_version', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
    sa.Column('model', sqlmodel.sql.sqltypes.AutoString(length=500), nullable=False),
    sa.Column('model_path', sqlmodel.sql.sqltypes.AutoString(length=1000), nullable=False),
    sa.Column('adapter_path', sqlmodel.sql.sqltypes.AutoString(length=1000), nullable=True),
    sa.Column('adapter_sha256', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
    sa.Column('training_run_id', sa.Integer(), nullable=True),
    sa.Column('backend', sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
    sa.Column('sampling', sa.JSON(), nullable=False),
    sa.Column('judges', sa.JSON(), nullable=False),
    sa.Column('selection', sa.JSON(), nullable=False),
    sa.Column('status', sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
    sa.Column('n_prompts', sa.Integer(), nullable=False),
    sa.Column('metrics', sa.JSON(), nullable=False),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('job_id', sa.Integer(), nullable=True),
    sa.Column('created_by', sa.Integer(), nullable=True),
    sa.Column('created_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.Column('finished_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
    sa.CheckConstraint("status IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')", name='ck_eval_run_status'),
    sa.ForeignKeyConstraint(['created_by'], ['app_user.id'], ),
    sa.ForeignKeyConstraint(['job_id'], ['job.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index(op.f('ix_eval_run_suite'), 'eval_run', ['suite'], unique=False)
    op.create_table('eval_output',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('run_id', sa.Integer(), nullable=False),
    sa.Column('prompt_id', sa.Integer(), nullable=False),
    sa.Column('set_name', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
    sa.Column('category', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True),
    sa.Column('mutation', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=True),
    sa.Column('expected_behavior', sqlmodel.sql.sqltypes.AutoString(length=10), nullable=False),
    sa.Column('metric', sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
    sa.Column('reasoning', sa.Text(), server_default='', nullable=False),
    sa.Column('response', sa.Text(), server_default='', nullable=False),
    sa.Column('raw', sa.Text(), server_default='', nullable=False),
    sa.Column('parse_ok', sa.Boolean(), nullable=False),
    sa.Column('refused', sa.Boolean(), nullable=False),
    sa.Column('failed', sa.Boolean(), nullable=False),
    sa.Column('judge_labels', sa.JSON(), nullable=False),
    sa.Column('human_refused', sa.Boolean(), nullable=True),
    sa.Column('human_failed', sa.Boolean(), nullable=True),
    sa.Column('prompt_tokens', sa.Integer(), nullable=True),
    sa.Column('completion_tokens', sa.Integer(), nullable=True),
    sa.Column('gen_seconds', sa.Float(), nullable=True),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('created_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['prompt_id'], ['prompt.id'], ),
    sa.ForeignKeyConstraint(['run_id'], ['eval_run.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('run_id', 'prompt_id', name='uq_eval_output_run_prompt')
    )
    op.create_index(op.f('ix_eval_output_prompt_id'), 'eval_output', ['prompt_id'], unique=False)
    op.create_index(op.f('ix_eval_output_run_id'), 'eval_output', ['run_id'], unique=False)
    op.create_table('eval_label',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('output_id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=True),
    sa.Column('refused', sa.Boolean(), nullable=False),
    sa.Column('failed', sa.Boolean(), nullable=False),
    sa.Column('comment', sa.Text(), server_default='', nullable=False),
    sa.Column('created_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['output_id'], ['eval_output.id'], ),
    sa.ForeignKeyConstraint(['user_id'], ['app_user.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index(op.f('ix_eval_label_output_id'), 'eval_label', ['output_id'], unique=False)
    op.create_table('pair_vote',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('run_a_id', sa.Integer(), nullable=False),
    sa.Column('run_b_id', sa.Integer(), nullable=False),
    sa.Column('prompt_id', sa.Integer(), nullable=False),
    sa.Column('output_a_id', sa.Integer(), nullable=False),
    sa.Column('output_b_id', sa.Integer(), nullable=False),
    sa.Column('voter_id', sa.Integer(), nullable=False),
    sa.Column('a_on_left', sa.Boolean(), nullable=False),
    sa.Column('shown_choice', sqlmodel.sql.sqltypes.AutoString(length=10), nullable=False),
    sa.Column('choice', sqlmodel.sql.sqltypes.AutoString(length=10), nullable=False),
    sa.Column('seconds_spent', sa.Float(), nullable=True),
    sa.Column('created_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.CheckConstraint("choice IN ('a', 'b', 'tie', 'both_bad')", name='ck_pair_vote_choice'),
    sa.ForeignKeyConstraint(['output_a_id'], ['eval_output.id'], ),
    sa.ForeignKeyConstraint(['output_b_id'], ['eval_output.id'], ),
    sa.ForeignKeyConstraint(['prompt_id'], ['prompt.id'], ),
    sa.ForeignKeyConstraint(['run_a_id'], ['eval_run.id'], ),
    sa.ForeignKeyConstraint(['run_b_id'], ['eval_run.id'], ),
    sa.ForeignKeyConstraint(['voter_id'], ['app_user.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('voter_id', 'output_a_id', 'output_b_id', name='uq_pair_vote_voter_pair')
    )
    op.create_index(op.f('ix_pair_vote_run_a_id'), 'pair_vote', ['run_a_id'], unique=False)
    op.create_index(op.f('ix_pair_vote_run_b_id'), 'pair_vote', ['run_b_id'], unique=False)
    op.create_index(op.f('ix_pair_vote_voter_id'), 'pair_vote', ['voter_id'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_pair_vote_voter_id'), table_name='pair_vote')
    op.drop_index(op.f('ix_pair_vote_run_b_id'), table_name='pair_vote')
    op.drop_index(op.f('ix_pair_vote_run_a_id'), table_name='pair_vote')
    op.drop_table('pair_vote')
    op.drop_index(op.f('ix_eval_label_output_id'), table_name='eval_label')
    op.drop_table('eval_label')
    op.drop_index(op.f('ix_eval_output_run_id'), table_name='eval_output')
    op.drop_index(op.f('ix_eval_output_prompt_id'), table_name='eval_output')
    op.drop_table('eval_output')
    op.drop_index(op.f('ix_eval_run_suite'), table_name='eval_run')
    op.drop_table('eval_run')
