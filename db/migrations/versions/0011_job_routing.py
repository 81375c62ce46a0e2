"""jobs can require a worker label; workers say which labels they carry

Revision ID: 0011_job_routing
Revises: 0002
"""
import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = '0011_job_routing'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('job', schema=None) as batch_op:
        batch_op.add_column(sa.Column('requires_label', sqlmodel.sql.sqltypes.AutoString(length=40), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('job', schema=None) as batch_op:
        batch_op.drop_column('requires_label')
