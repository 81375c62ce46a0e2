"""editable template versions (self-check, mutation, judge templates)

Revision ID: 0004_generation
Revises: 0002
"""
import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = '0004_generation'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('template_version',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('text', sa.Text(), nullable=False),
    sa.Column('note', sqlmodel.sql.sqltypes.AutoString(length=500), nullable=False),
    sa.Column('created_by', sa.Integer(), nullable=True),
    sa.Column('created_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['created_by'], ['app_user.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('name', 'version', name='uq_template_version_name_version')
    )
    op.create_index(op.f('ix_template_version_name'), 'template_version', ['name'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_template_version_name'), table_name='template_version')
    op.drop_table('template_version')
