"""A store shared by several hosts: settings kept in the database (where a URL store's files are),
and counts of parameters and bytes as BIGINT (PostgreSQL's INTEGER stops at 2^31: a 7B model).

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

BIG = {"model": ("parameters", "size_bytes"),
       "pruningrun": ("peak_memory_bytes", "parameters_before", "parameters_after")}  # fmt: skip


def upgrade() -> None:
    op.create_table(
        "setting",
        sa.Column("key", sa.String(), nullable=False),
        sa.Column("value", sa.String(), nullable=False),
        sa.PrimaryKeyConstraint("key"),
    )
    for table, columns in BIG.items():
        with op.batch_alter_table(table) as batch:
            for column in columns:
                batch.alter_column(column, type_=sa.BigInteger(), existing_type=sa.Integer())


def downgrade() -> None:
    for table, columns in BIG.items():
        with op.batch_alter_table(table) as batch:
            for column in columns:
                batch.alter_column(column, type_=sa.Integer(), existing_type=sa.BigInteger())
    op.drop_table("setting")
