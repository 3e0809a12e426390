"""Background jobs: the job table, and the job that made each pruning run and evaluation.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "job",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(), nullable=False),
        sa.Column("spec", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("stage", sa.String(), nullable=False),
        sa.Column("progress", sa.Float(), nullable=False),
        sa.Column("message", sa.String(), nullable=False),
        sa.Column("eta_seconds", sa.Float(), nullable=True),
        sa.Column("cancel_requested", sa.Boolean(), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=True),
        sa.Column("host", sa.String(), nullable=True),
        sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("error", sa.String(), nullable=True),
        sa.Column("log_path", sa.String(), nullable=True),
        sa.Column("result", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_job_status", "job", ["status"], unique=False)
    # SQLite cannot add a foreign key to a table in place: batch mode rebuilds both tables.
    for table in ("pruningrun", "evaluation"):
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("job_id", sa.Integer(), nullable=True))
            batch.create_foreign_key(f"fk_{table}_job_id_job", "job", ["job_id"], ["id"])


def downgrade() -> None:
    for table in ("evaluation", "pruningrun"):
        with op.batch_alter_table(table) as batch:
            batch.drop_constraint(f"fk_{table}_job_id_job", type_="foreignkey")
            batch.drop_column("job_id")
    op.drop_index("ix_job_status", table_name="job")
    op.drop_table("job")
