"""demo library, live run summary and start time

Revision ID: 0008_generation_demos
Revises: 0004_generation
"""
import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = '0008_generation_demos'
down_revision = '0004_generation'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('demo',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('behavior', sqlmodel.sql.sqltypes.AutoString(length=10), nullable=False),
    sa.Column('prompt', sa.Text(), nullable=False),
    sa.Column('prompt_sha256', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('reasoning', sa.Text(), nullable=False),
    sa.Column('response', sa.Text(), nullable=False),
    sa.Column('source', sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
    sa.Column('trace_id', sa.Integer(), nullable=True),
    sa.Column('is_active', sa.Boolean(), nullable=False),
    sa.Column('created_by', sa.Integer(), nullable=True),
    sa.Column('created_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.CheckConstraint("behavior IN ('refuse', 'comply', 'partial')", name='ck_demo_behavior'),
    sa.ForeignKeyConstraint(['created_by'], ['app_user.id'], ),
    sa.ForeignKeyConstraint(['trace_id'], ['trace.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('prompt_sha256', 'behavior', name='uq_demo_prompt_behavior')
    )
    op.create_index(op.f('ix_demo_prompt_sha256'), 'demo', ['prompt_sha256'], unique=False)
    with op.batch_alter_table('generation_run', schema=None) as batch_op:
        batch_op.add_column(sa.Column('summary', sa.JSON(), server_default='{}', nullable=False))
        batch_op.add_column(sa.Column('started_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('generation_run', schema=None) as batch_op:
        batch_op.drop_column('started_at')
        batch_op.drop_column('summary')
    op.drop_index(op.f('ix_demo_prompt_sha256'), table_name='demo')
    op.drop_table('demo')
