"""export snapshots with lineage; training runs, metrics and checkpoints

Revision ID: 0005_export_training
Revises: 0002
"""
import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = '0005_export_training'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('export_snapshot',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('project_id', sa.Integer(), nullable=False),
    sa.Column('name', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
    sa.Column('kind', sqlmodel.sql.sqltypes.AutoString(length=10), nullable=False),
    sa.Column('status', sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
    sa.Column('filter', sa.JSON(), nullable=False),
    sa.Column('options', sa.JSON(), nullable=False),
    sa.Column('formats', sa.JSON(), nullable=False),
    sa.Column('path', sqlmodel.sql.sqltypes.AutoString(length=1000), nullable=True),
    sa.Column('sha256', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
    sa.Column('row_count', sa.Integer(), nullable=False),
    sa.Column('counts', sa.JSON(), nullable=False),
    sa.Column('contamination', sa.JSON(), nullable=False),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('created_by', sa.Integer(), nullable=True),
    sa.Column('job_id', sa.Integer(), nullable=True),
    sa.Column('created_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.Column('finished_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
    sa.CheckConstraint("kind IN ('sft', 'dpo')", name='ck_export_snapshot_kind'),
    sa.CheckConstraint("status IN ('building', 'ready', 'failed')", name='ck_export_snapshot_status'),
    sa.ForeignKeyConstraint(['created_by'], ['app_user.id'], ),
    sa.ForeignKeyConstraint(['job_id'], ['job.id'], ),
    sa.ForeignKeyConstraint(['project_id'], ['project.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('project_id', 'name', name='uq_export_snapshot_project_name')
    )

    op.create_table('export_item',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('export_id', sa.Integer(), nullable=False),
    sa.Column('row_index', sa.Integer(), nullable=False),
    sa.Column('split', sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
    sa.Column('role', sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
    sa.Column('source', sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
    sa.Column('trace_id', sa.Integer(), nullable=False),
    sa.Column('trace_version', sa.Integer(), nullable=False),
    sa.Column('annotation_id', sa.Integer(), nullable=True),
    sa.Column('annotation_version', sa.Integer(), nullable=True),
    sa.ForeignKeyConstraint(['export_id'], ['export_snapshot.id'], ),
    sa.ForeignKeyConstraint(['trace_id'], ['trace.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('export_item', schema=None) as batch_op:
        batch_op.create_index('ix_export_item_export_row', ['export_id', 'row_index'], unique=False)
        batch_op.create_index(batch_op.f('ix_export_item_trace_id'), ['trace_id'], unique=False)

    op.create_table('training_run',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
    sa.Column('export_id', sa.Integer(), nullable=True),
    sa.Column('export_name', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
    sa.Column('base_model', sqlmodel.sql.sqltypes.AutoString(length=500), nullable=False),
    sa.Column('method', sqlmodel.sql.sqltypes.AutoString(length=10), nullable=False),
    sa.Column('preset', sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
    sa.Column('config', sa.JSON(), nullable=False),
    sa.Column('status', sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
    sa.Column('job_id', sa.Integer(), nullable=True),
    sa.Column('output_dir', sqlmodel.sql.sqltypes.AutoString(length=1000), nullable=True),
    sa.Column('adapter_path', sqlmodel.sql.sqltypes.AutoString(length=1000), nullable=True),
    sa.Column('merged_path', sqlmodel.sql.sqltypes.AutoString(length=1000), nullable=True),
    sa.Column('last_checkpoint', sqlmodel.sql.sqltypes.AutoString(length=1000), nullable=True),
    sa.Column('global_step', sa.Integer(), nullable=False),
    sa.Column('max_steps', sa.Integer(), nullable=True),
    sa.Column('pid', sa.Integer(), nullable=True),
    sa.Column('metrics', sa.JSON(), nullable=False),
    sa.Column('log_tail', sa.Text(), server_default='', nullable=False),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('created_by', sa.Integer(), nullable=True),
    sa.Column('created_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.Column('started_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
    sa.Column('finished_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
    sa.CheckConstraint("method IN ('sft', 'dpo')", name='ck_training_run_method'),
    sa.CheckConstraint("status IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')", name='ck_training_run_status'),
    sa.ForeignKeyConstraint(['created_by'], ['app_user.id'], ),
    sa.ForeignKeyConstraint(['export_id'], ['export_snapshot.id'], ),
    sa.ForeignKeyConstraint(['job_id'], ['job.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('training_run', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_training_run_export_id'), ['export_id'], unique=False)

    op.create_table('training_checkpoint',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('run_id', sa.Integer(), nullable=False),
    sa.Column('step', sa.Integer(), nullable=False),
    sa.Column('path', sqlmodel.sql.sqltypes.AutoString(length=1000), nullable=False),
    sa.Column('created_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['run_id'], ['training_run.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('run_id', 'step', name='uq_training_checkpoint_run_step')
    )
    with op.batch_alter_table('training_checkpoint', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_training_checkpoint_run_id'), ['run_id'], unique=False)

    op.create_table('training_metric',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('run_id', sa.Integer(), nullable=False),
    sa.Column('step', sa.Integer(), nullable=False),
    sa.Column('kind', sqlmodel.sql.sqltypes.AutoString(length=10), nullable=False),
    sa.Column('epoch', sa.Float(), nullable=True),
    sa.Column('loss', sa.Float(), nullable=True),
    sa.Column('learning_rate', sa.Float(), nullable=True),
    sa.Column('grad_norm', sa.Float(), nullable=True),
    sa.Column('tokens_per_s', sa.Float(), nullable=True),
    sa.Column('values', sa.JSON(), nullable=False),
    sa.Column('created_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['run_id'], ['training_run.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('training_metric', schema=None) as batch_op:
        batch_op.create_index('ix_training_metric_run_step', ['run_id', 'step'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('training_metric', schema=None) as batch_op:
        batch_op.drop_index('ix_training_metric_run_step')
    op.drop_table('training_metric')
    with op.batch_alter_table('training_checkpoint', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_training_checkpoint_run_id'))
    op.drop_table('training_checkpoint')
    with op.batch_alter_table('training_run', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_training_run_export_id'))
    op.drop_table('training_run')
    with op.batch_alter_table('export_item', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_export_item_trace_id'))
        batch_op.drop_index('ix_export_item_export_row')
    op.drop_table('export_item')
    op.drop_table('export_snapshot')
