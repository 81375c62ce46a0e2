"""learned judge versions

Revision ID: 0009_judge_versions
Revises: 0008_generation_demos
"""
import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = '0009_judge_versions'
down_revision = '0008_generation_demos'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('judge_version',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('model', sa.JSON(), nullable=False),
    sa.Column('card', sa.JSON(), nullable=False),
    sa.Column('created_by', sa.Integer(), nullable=True),
    sa.Column('created_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['created_by'], ['app_user.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('name', 'version', name='uq_judge_version_name_version')
    )
    op.create_index(op.f('ix_judge_version_name'), 'judge_version', ['name'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_judge_version_name'), table_name='judge_version')
    op.drop_table('judge_version')
