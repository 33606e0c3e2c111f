"""The report index (decision 0006): narrow facts, latest labels and daily feature-bin counts
derived from the chains, and each model version's training reference; built from the chains
already stored.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from app.audit.report_index import rebuild
from app.store.timestamps import UtcDateTime

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _text(name: str, length: int, nullable: bool = False) -> sa.Column:
    return sa.Column(name, sa.String(length=length), nullable=nullable)


def upgrade() -> None:
    with op.batch_alter_table("model_version") as batch:
        batch.add_column(sa.Column("reference", sa.Text(), nullable=True))
    op.create_table(
        "report_fact",
        sa.Column("sequence", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        _text("model", 128),
        _text("model_version", 64),
        _text("package_hash", 64),
        sa.Column("card_uuid", sa.Uuid(), nullable=False),
        _text("encounter_key", 64, nullable=True),
        sa.Column("card_shown", sa.Boolean(), nullable=False),
        _text("band", 32),
        sa.Column("probability", sa.Float(), nullable=False),
        _text("sex", 64),
        _text("age_band", 16),
        _text("race", 128),
        _text("ethnicity", 128),
        _text("language", 64),
        _text("response", 16, nullable=True),
        sa.Column("response_sequence", sa.Integer(), nullable=True),
        sa.Column("override_system", sa.String(), nullable=True),
        sa.Column("override_code", sa.String(), nullable=True),
        sa.Column("override_display", sa.String(), nullable=True),
        sa.Column("commented", sa.Boolean(), nullable=False),
        sa.Column("first_response_at", UtcDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("sequence"),
        sa.UniqueConstraint("card_uuid"),
    )
    op.create_index("ix_report_fact_model_created", "report_fact", ["model", "created_at"])
    op.create_index("ix_report_fact_encounter_key", "report_fact", ["encounter_key"])
    op.create_table(
        "report_label",
        _text("label", 64),
        sa.Column("sequence", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("card_value", sa.Float(), nullable=True),
        sa.Column("encounter_value", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("label", "sequence"),
    )
    op.create_table(
        "feature_bin_count",
        _text("package_hash", 64),
        sa.Column("day", sa.Date(), nullable=False),
        _text("feature", 128),
        sa.Column("bin", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("package_hash", "day", "feature", "bin"),
    )
    rebuild(op.get_bind())


def downgrade() -> None:
    op.drop_table("feature_bin_count")
    op.drop_table("report_label")
    op.drop_index("ix_report_fact_encounter_key", table_name="report_fact")
    op.drop_index("ix_report_fact_model_created", table_name="report_fact")
    op.drop_table("report_fact")
    with op.batch_alter_table("model_version") as batch:
        batch.drop_column("reference")
