"""The first milestone's tables: models, pruning runs, per-layer retention, evaluations.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "model",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("source", sa.String(), nullable=False),
        sa.Column("source_ref", sa.String(), nullable=False),
        sa.Column("family", sa.String(), nullable=False),
        sa.Column("architecture", sa.String(), nullable=False),
        sa.Column("num_layers", sa.Integer(), nullable=False),
        sa.Column("hidden_size", sa.Integer(), nullable=False),
        sa.Column("intermediate_size", sa.Integer(), nullable=False),
        sa.Column("intermediate_sizes", sa.JSON(), nullable=True),
        sa.Column("expansion", sa.Float(), nullable=False),
        sa.Column("parameters", sa.Integer(), nullable=False),
        sa.Column("dtype", sa.String(), nullable=False),
        sa.Column("size_bytes", sa.Integer(), nullable=False),
        sa.Column("path", sa.String(), nullable=False),
        sa.Column("parent_id", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("tags", sa.JSON(), nullable=False),
        sa.Column("note", sa.String(), nullable=False),
        sa.ForeignKeyConstraint(["parent_id"], ["model.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_model_name", "model", ["name"], unique=True)
    op.create_index("ix_model_parent_id", "model", ["parent_id"], unique=False)

    op.create_table(
        "pruningrun",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("base_model_id", sa.Integer(), nullable=False),
        sa.Column("result_model_id", sa.Integer(), nullable=True),
        sa.Column("scorer", sa.String(), nullable=False),
        sa.Column("target_kind", sa.String(), nullable=False),
        sa.Column("target_value", sa.Float(), nullable=False),
        sa.Column("divisor", sa.Integer(), nullable=False),
        sa.Column("allocation", sa.String(), nullable=False),
        sa.Column("layers", sa.String(), nullable=False),
        sa.Column("calibration_source", sa.String(), nullable=True),
        sa.Column("calibration_samples", sa.Integer(), nullable=True),
        sa.Column("calibration_seq_len", sa.Integer(), nullable=True),
        sa.Column("calibration_hash", sa.String(), nullable=True),
        sa.Column("device", sa.String(), nullable=False),
        sa.Column("dtype", sa.String(), nullable=False),
        sa.Column("versions", sa.JSON(), nullable=False),
        sa.Column("stage_seconds", sa.JSON(), nullable=False),
        sa.Column("peak_memory_bytes", sa.Integer(), nullable=True),
        sa.Column("parameters_before", sa.Integer(), nullable=True),
        sa.Column("parameters_after", sa.Integer(), nullable=True),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("error", sa.String(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["base_model_id"], ["model.id"]),
        sa.ForeignKeyConstraint(["result_model_id"], ["model.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_pruningrun_base_model_id", "pruningrun", ["base_model_id"], unique=False)
    op.create_index("ix_pruningrun_created_at", "pruningrun", ["created_at"], unique=False)
    op.create_index("ix_pruningrun_result_model_id", "pruningrun", ["result_model_id"], unique=False)
    op.create_index("ix_pruningrun_scorer", "pruningrun", ["scorer"], unique=False)

    op.create_table(
        "layerretention",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("layer", sa.Integer(), nullable=False),
        sa.Column("original_width", sa.Integer(), nullable=False),
        sa.Column("kept_width", sa.Integer(), nullable=False),
        sa.Column("percent_kept", sa.Float(), nullable=False),
        sa.Column("kept_score_min", sa.Float(), nullable=True),
        sa.Column("kept_score_mean", sa.Float(), nullable=True),
        sa.Column("kept_score_max", sa.Float(), nullable=True),
        sa.Column("removed_score_min", sa.Float(), nullable=True),
        sa.Column("removed_score_mean", sa.Float(), nullable=True),
        sa.Column("removed_score_max", sa.Float(), nullable=True),
        sa.Column("kept_indices", sa.String(), nullable=False),
        sa.ForeignKeyConstraint(["run_id"], ["pruningrun.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_layerretention_run_layer", "layerretention", ["run_id", "layer"], unique=True)

    op.create_table(
        "evaluation",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("model_id", sa.Integer(), nullable=False),
        sa.Column("harness", sa.String(), nullable=False),
        sa.Column("harness_version", sa.String(), nullable=False),
        sa.Column("task", sa.String(), nullable=False),
        sa.Column("metric", sa.String(), nullable=False),
        sa.Column("value", sa.Float(), nullable=False),
        sa.Column("stderr", sa.Float(), nullable=True),
        sa.Column("samples", sa.Integer(), nullable=True),
        sa.Column("limit", sa.Float(), nullable=True),
        sa.Column("fewshot", sa.Integer(), nullable=True),
        sa.Column("settings", sa.JSON(), nullable=False),
        sa.Column("device", sa.String(), nullable=False),
        sa.Column("dtype", sa.String(), nullable=False),
        sa.Column("seconds", sa.Float(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["model_id"], ["model.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "ix_evaluation_model_task_metric", "evaluation", ["model_id", "task", "metric"], unique=False
    )


def downgrade() -> None:
    op.drop_table("evaluation")
    op.drop_table("layerretention")
    op.drop_table("pruningrun")
    op.drop_table("model")
