"""The audit store: chained prediction, feedback, outcome and access-log tables, chain heads,
model versions and API tokens. The explanation table is absorbed by ``prediction``; existing
feedback rows are chained in their order of arrival.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from app.audit.chain import GENESIS, link_hash
from app.audit.ledger import content_of
from app.store.timestamps import UtcDateTime

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

CHAINS = ("prediction", "feedback", "outcome", "access")
FEEDBACK_CONTENT = [
    "dedupe_key",
    "service_id",
    "card_uuid",
    "outcome",
    "override_system",
    "override_code",
    "override_display",
    "user_comment",
    "accepted_suggestions",
    "outcome_timestamp",
    "received_at",
    "client_iss",
]


def _key(name: str, nullable: bool = False) -> sa.Column:
    return sa.Column(name, sa.String(length=64), nullable=nullable)


def _link_columns() -> list[sa.Column]:
    return [
        sa.Column("sequence", sa.Integer(), nullable=False),
        _key("previous_hash"),
        _key("record_hash"),
        sa.Column("id", sa.Integer(), nullable=False),
    ]


def _when(name: str, nullable: bool = False) -> sa.Column:
    return sa.Column(name, UtcDateTime(), nullable=nullable)


def upgrade() -> None:
    chain_head = op.create_table(
        "audit_chain",
        sa.Column("name", sa.String(length=32), nullable=False),
        sa.Column("head_sequence", sa.Integer(), nullable=False),
        _key("head_hash"),
        sa.Column("base_sequence", sa.Integer(), nullable=False),
        _key("base_hash"),
        sa.PrimaryKeyConstraint("name"),
    )
    _create_prediction()
    _create_outcome()
    _create_access_log()
    op.create_table(
        "api_token",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("role", sa.String(length=32), nullable=False),
        _key("token_hash"),
        _when("created_at"),
        _when("revoked_at", nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name"),
        sa.UniqueConstraint("token_hash"),
    )
    op.create_table(
        "model_version",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("model", sa.String(length=128), nullable=False),
        sa.Column("version", sa.String(length=64), nullable=False),
        _key("package_hash"),
        sa.Column("trained_at", sa.String(length=64), nullable=False),
        _when("first_started_at"),
        _when("last_started_at"),
        sa.Column("fingerprint", sa.Text(), nullable=False),
        sa.Column("performance", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("package_hash"),
    )
    op.create_index("ix_model_version_model", "model_version", ["model"])
    op.drop_table("explanation")
    feedback_head = _rechain_feedback()
    op.bulk_insert(
        chain_head,
        [
            {
                "name": name,
                "head_sequence": feedback_head[0] if name == "feedback" else 0,
                "head_hash": feedback_head[1] if name == "feedback" else GENESIS,
                "base_sequence": 0,
                "base_hash": GENESIS,
            }
            for name in CHAINS
        ],
    )


def _create_prediction() -> None:
    text_columns = ("features", "missing", "provenance", "quality_notes", "contributions")
    op.create_table(
        "prediction",
        *_link_columns(),
        _when("created_at"),
        sa.Column("card_uuid", sa.Uuid(), nullable=False),
        sa.Column("card_shown", sa.Boolean(), nullable=False),
        sa.Column("service_id", sa.String(length=128), nullable=False),
        sa.Column("hook", sa.String(length=64), nullable=False),
        sa.Column("hook_instance", sa.String(length=128), nullable=False),
        sa.Column("client_iss", sa.String(length=512), nullable=False),
        sa.Column("model", sa.String(length=128), nullable=False),
        sa.Column("model_version", sa.String(length=64), nullable=False),
        _key("package_hash"),
        _key("patient_key"),
        _key("encounter_key", nullable=True),
        _key("user_key", nullable=True),
        _when("index_time"),
        sa.Column("probability", sa.Float(), nullable=False),
        sa.Column("raw_probability", sa.Float(), nullable=False),
        sa.Column("band", sa.String(length=32), nullable=False),
        sa.Column("base_value", sa.Float(), nullable=False),
        *(sa.Column(name, sa.Text(), nullable=False) for name in text_columns),
        sa.Column("drivers", sa.Text(), nullable=False),
        sa.Column("sex", sa.String(length=64), nullable=False),
        sa.Column("age_band", sa.String(length=16), nullable=False),
        sa.Column("race", sa.String(length=128), nullable=False),
        sa.Column("ethnicity", sa.String(length=128), nullable=False),
        sa.Column("language", sa.String(length=64), nullable=False),
        sa.Column("map_ms", sa.Float(), nullable=False),
        sa.Column("score_ms", sa.Float(), nullable=False),
        sa.Column("total_ms", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("card_uuid"),
        sa.UniqueConstraint("sequence"),
    )
    for column in ("created_at", "encounter_key", "model", "patient_key"):
        op.create_index(f"ix_prediction_{column}", "prediction", [column])


def _create_outcome() -> None:
    op.create_table(
        "outcome",
        *_link_columns(),
        _key("dedupe_key"),
        _key("encounter_key", nullable=True),
        sa.Column("card_uuid", sa.Uuid(), nullable=True),
        sa.Column("label", sa.String(length=64), nullable=False),
        sa.Column("value", sa.Float(), nullable=False),
        _when("observed_at"),
        _when("received_at"),
        sa.Column("source", sa.String(length=256), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("dedupe_key"),
        sa.UniqueConstraint("sequence"),
    )
    for column in ("card_uuid", "encounter_key", "received_at"):
        op.create_index(f"ix_outcome_{column}", "outcome", [column])


def _create_access_log() -> None:
    op.create_table(
        "access_log",
        *_link_columns(),
        _when("at"),
        sa.Column("actor", sa.String(length=128), nullable=False),
        sa.Column("role", sa.String(length=32), nullable=False),
        sa.Column("action", sa.String(length=128), nullable=False),
        sa.Column("parameters", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("sequence"),
    )
    op.create_index("ix_access_log_at", "access_log", ["at"])


def _rechain_feedback() -> tuple[int, str]:
    """Rebuild ``feedback`` with link columns, chaining existing rows by id; the new head."""
    old = sa.table(
        "feedback",
        sa.column("id", sa.Integer()),
        *(sa.column(name, _old_type(name)) for name in FEEDBACK_CONTENT),
    )
    connection = op.get_bind()
    existing = [
        dict(row) for row in connection.execute(sa.select(old).order_by(old.c.id)).mappings()
    ]
    op.drop_index("ix_feedback_card_uuid", table_name="feedback")
    op.drop_index("ix_feedback_service_id", table_name="feedback")
    op.drop_table("feedback")
    feedback = op.create_table(
        "feedback",
        *_link_columns(),
        _key("dedupe_key"),
        sa.Column("service_id", sa.String(length=128), nullable=False),
        sa.Column("card_uuid", sa.Uuid(), nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("override_system", sa.String(), nullable=True),
        sa.Column("override_code", sa.String(), nullable=True),
        sa.Column("override_display", sa.String(), nullable=True),
        sa.Column("user_comment", sa.Text(), nullable=True),
        sa.Column("accepted_suggestions", sa.String(), nullable=False),
        _when("outcome_timestamp"),
        _when("received_at"),
        sa.Column("client_iss", sa.String(length=512), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("dedupe_key"),
        sa.UniqueConstraint("sequence"),
    )
    op.create_index("ix_feedback_service_id", "feedback", ["service_id"])
    op.create_index("ix_feedback_card_uuid", "feedback", ["card_uuid"])
    head = (0, GENESIS)
    rows = []
    for row in existing:
        content = content_of(FEEDBACK_CONTENT, row)
        record_hash = link_hash(head[1], content)
        rows.append(
            {
                **content,
                "sequence": head[0] + 1,
                "previous_hash": head[1],
                "record_hash": record_hash,
            }
        )
        head = (head[0] + 1, record_hash)
    if rows:
        op.bulk_insert(feedback, rows)
    return head


def _old_type(name: str) -> sa.types.TypeEngine | None:
    if name == "card_uuid":
        return sa.Uuid()
    if name in ("outcome_timestamp", "received_at"):
        return UtcDateTime()
    return None


def downgrade() -> None:
    raise NotImplementedError("the audit store cannot be downgraded without losing its chains")
