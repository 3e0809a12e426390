"""Studies (named sweeps and what each asked for) and job dependencies.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("job") as batch:
        batch.add_column(sa.Column("after_job_id", sa.Integer(), nullable=True))
        batch.create_foreign_key("fk_job_after_job_id_job", "job", ["after_job_id"], ["id"])
    op.create_table(
        "study",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("base_model", sa.String(), nullable=False),
        sa.Column("base_model_id", sa.Integer(), nullable=True),
        sa.Column("request", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["base_model_id"], ["model.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_study_name", "study", ["name"], unique=True)
    op.create_table(
        "studyitem",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("study_id", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(), nullable=False),
        sa.Column("config", sa.JSON(), nullable=False),
        sa.Column("role", sa.String(), nullable=False),
        sa.Column("job_id", sa.Integer(), nullable=True),
        sa.Column("run_id", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["study_id"], ["study.id"]),
        sa.ForeignKeyConstraint(["job_id"], ["job.id"]),
        sa.ForeignKeyConstraint(["run_id"], ["pruningrun.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_studyitem_study_key", "studyitem", ["study_id", "key"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_studyitem_study_key", table_name="studyitem")
    op.drop_table("studyitem")
    op.drop_index("ix_study_name", table_name="study")
    op.drop_table("study")
    with op.batch_alter_table("job") as batch:
        batch.drop_constraint("fk_job_after_job_id_job", type_="foreignkey")
        batch.drop_column("after_job_id")
