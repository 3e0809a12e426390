"""Recovery: repair settings and per-layer reconstruction errors of pruning runs, heal runs, and
studies that reuse a heal.

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("pruningrun") as batch:
        batch.add_column(sa.Column("repair", sa.String(), nullable=True))
        batch.add_column(sa.Column("repair_damping", sa.Float(), nullable=True))
    with op.batch_alter_table("layerretention") as batch:
        batch.add_column(sa.Column("repair_error_before", sa.Float(), nullable=True))
        batch.add_column(sa.Column("repair_error_after", sa.Float(), nullable=True))
        batch.add_column(sa.Column("repair_lambda", sa.Float(), nullable=True))
    op.create_table(
        "healrun",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("model_id", sa.Integer(), nullable=False),
        sa.Column("teacher_model_id", sa.Integer(), nullable=False),
        sa.Column("result_model_id", sa.Integer(), nullable=True),
        sa.Column("job_id", sa.Integer(), nullable=True),
        sa.Column("data_source", sa.String(), nullable=False),
        sa.Column("data_hash", sa.String(), nullable=False),
        sa.Column("tokens", sa.BigInteger(), nullable=False),
        sa.Column("tokens_seen", sa.BigInteger(), nullable=False),
        sa.Column("passes", sa.Float(), nullable=False),
        sa.Column("steps", sa.Integer(), nullable=False),
        sa.Column("seq_len", sa.Integer(), nullable=False),
        sa.Column("batch_size", sa.Integer(), nullable=False),
        sa.Column("lr", sa.Float(), nullable=False),
        sa.Column("temperature", sa.Float(), nullable=False),
        sa.Column("train", sa.String(), nullable=False),
        sa.Column("device", sa.String(), nullable=False),
        sa.Column("dtype", sa.String(), nullable=False),
        sa.Column("settings", sa.JSON(), nullable=False),
        sa.Column("loss_curve", sa.JSON(), nullable=False),
        sa.Column("seconds", sa.Float(), nullable=True),
        sa.Column("peak_memory_bytes", sa.BigInteger(), nullable=True),
        sa.Column("versions", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["model_id"], ["model.id"]),
        sa.ForeignKeyConstraint(["teacher_model_id"], ["model.id"]),
        sa.ForeignKeyConstraint(["result_model_id"], ["model.id"]),
        sa.ForeignKeyConstraint(["job_id"], ["job.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_healrun_model_id", "healrun", ["model_id"], unique=False)
    op.create_index("ix_healrun_result_model_id", "healrun", ["result_model_id"], unique=False)
    op.create_index("ix_healrun_created_at", "healrun", ["created_at"], unique=False)
    with op.batch_alter_table("studyitem") as batch:
        batch.add_column(sa.Column("heal_id", sa.Integer(), nullable=True))
        batch.create_foreign_key("fk_studyitem_heal_id_healrun", "healrun", ["heal_id"], ["id"])


def downgrade() -> None:
    with op.batch_alter_table("studyitem") as batch:
        batch.drop_constraint("fk_studyitem_heal_id_healrun", type_="foreignkey")
        batch.drop_column("heal_id")
    op.drop_index("ix_healrun_created_at", table_name="healrun")
    op.drop_index("ix_healrun_result_model_id", table_name="healrun")
    op.drop_index("ix_healrun_model_id", table_name="healrun")
    op.drop_table("healrun")
    with op.batch_alter_table("layerretention") as batch:
        batch.drop_column("repair_lambda")
        batch.drop_column("repair_error_after")
        batch.drop_column("repair_error_before")
    with op.batch_alter_table("pruningrun") as batch:
        batch.drop_column("repair_damping")
        batch.drop_column("repair")
