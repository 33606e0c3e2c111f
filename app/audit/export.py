"""``bedside audit export``: predictions and events in the layout Epic's seismometer loads.

``predictions`` has one row per prediction: ``entity_id`` (pseudonymous patient key),
``context_id`` (pseudonymous encounter key), ``prediction_time``, ``score``, ``target`` (the
latest outcome of ``label`` for that encounter or card, empty when not known yet), the model,
band, whether the card was shown, the cohort attributes and every feature value.
``events`` has one row per outcome and per clinician response (``type``, ``time``, ``value``)
of the exported predictions. A ``usage_config.yml`` for seismometer is written beside them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import orjson
import pandas as pd
import yaml
from sqlalchemy import Select, select
from sqlalchemy.engine import Engine

from app.audit.tables import FeedbackRecord, OutcomeRecord, PredictionRecord

COHORTS = ("sex", "age_band", "race", "ethnicity", "language")
PREDICTION_COLUMNS = [
    "entity_id",
    "context_id",
    "prediction_time",
    "score",
    "target",
    "model",
    "model_version",
    "band",
    "card_shown",
    "card_uuid",
    *COHORTS,
]
EVENT_COLUMNS = ["entity_id", "context_id", "type", "time", "value"]
Format = Literal["parquet", "csv"]


@dataclass(frozen=True)
class ExportResult:
    predictions: int
    events: int
    files: tuple[Path, ...]


def _selected(
    model: str | None, start: datetime | None, end: datetime | None, *columns: Any
) -> Select[Any]:
    """The predictions in the export's window and model, ``columns`` or whole rows."""
    table = PredictionRecord.__table__  # type: ignore[attr-defined]
    statement = select(*(columns or (table,)))
    if model:
        statement = statement.where(table.c.model == model)
    if start:
        statement = statement.where(table.c.created_at >= start)
    if end:
        statement = statement.where(table.c.created_at < end)
    return statement


def _predictions(
    engine: Engine, model: str | None, start: datetime | None, end: datetime | None
) -> pd.DataFrame:
    table = PredictionRecord.__table__  # type: ignore[attr-defined]
    statement = _selected(model, start, end).order_by(table.c.sequence)
    with engine.connect() as connection:
        rows = [dict(row) for row in connection.execute(statement).mappings()]
    return pd.DataFrame(rows)


def _outcomes(engine: Engine) -> pd.DataFrame:
    table = OutcomeRecord.__table__  # type: ignore[attr-defined]
    with engine.connect() as connection:
        rows = [
            dict(r) for r in connection.execute(select(table).order_by(table.c.sequence)).mappings()
        ]
    return pd.DataFrame(rows, columns=[c.name for c in table.columns])


def _feedback(
    engine: Engine, model: str | None, start: datetime | None, end: datetime | None
) -> pd.DataFrame:
    """Responses to the exported predictions' cards (joined in SQL: no list of uuids)."""
    table = FeedbackRecord.__table__  # type: ignore[attr-defined]
    cards = _selected(model, start, end, PredictionRecord.__table__.c.card_uuid)  # type: ignore[attr-defined]
    statement = select(table).where(table.c.card_uuid.in_(cards)).order_by(table.c.sequence)
    with engine.connect() as connection:
        rows = [dict(row) for row in connection.execute(statement).mappings()]
    return pd.DataFrame(rows, columns=[c.name for c in table.columns])


def export_tables(
    engine: Engine,
    label: str,
    model: str | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The predictions and events frames (seismometer's layout)."""
    raw = _predictions(engine, model, start, end)
    if raw.empty:
        return pd.DataFrame(columns=PREDICTION_COLUMNS), pd.DataFrame(columns=EVENT_COLUMNS)
    outcomes = _outcomes(engine)
    by_card = raw.set_index("card_uuid")[["patient_key", "encounter_key"]]
    events = [
        _outcome_events(outcomes, raw, by_card),
        _feedback_events(_feedback(engine, model, start, end), raw),
    ]
    found = [frame for frame in events if not frame.empty]
    events_frame = (
        pd.concat(found, ignore_index=True) if found else pd.DataFrame(columns=EVENT_COLUMNS)
    )
    predictions = pd.DataFrame(
        {
            "entity_id": raw["patient_key"],
            "context_id": raw["encounter_key"],
            "prediction_time": raw["created_at"],
            "score": raw["probability"],
            "target": _targets(raw, outcomes, label),
            "model": raw["model"],
            "model_version": raw["model_version"],
            "band": raw["band"],
            "card_shown": raw["card_shown"].astype(bool),
            "card_uuid": raw["card_uuid"].astype(str),
            **{cohort: raw[cohort] for cohort in COHORTS},
        }
    )
    features = pd.DataFrame([orjson.loads(text) for text in raw["features"]]).astype(float)
    predictions = pd.concat([predictions, features.add_prefix("feature_")], axis=1)
    return predictions, events_frame[EVENT_COLUMNS].sort_values("time", ignore_index=True)


def _targets(raw: pd.DataFrame, outcomes: pd.DataFrame, label: str) -> pd.Series:
    """The latest received value of ``label`` per prediction (by card uuid, else encounter)."""
    wanted = outcomes[outcomes["label"] == label].sort_values("sequence")
    by_card = wanted.dropna(subset=["card_uuid"]).groupby("card_uuid")["value"].last()
    by_encounter = wanted.dropna(subset=["encounter_key"]).groupby("encounter_key")["value"].last()
    from_card = raw["card_uuid"].map(by_card)
    from_encounter = raw["encounter_key"].map(by_encounter)
    return from_card.fillna(from_encounter).astype(float)


def _outcome_events(
    outcomes: pd.DataFrame, raw: pd.DataFrame, by_card: pd.DataFrame
) -> pd.DataFrame:
    if outcomes.empty:
        return pd.DataFrame(columns=EVENT_COLUMNS)
    encounters = raw.dropna(subset=["encounter_key"]).drop_duplicates("encounter_key")
    patient_of_encounter = encounters.set_index("encounter_key")["patient_key"]
    card_match = outcomes["card_uuid"].map(by_card["patient_key"])
    encounter_of_card = outcomes["card_uuid"].map(by_card["encounter_key"])
    entity = card_match.fillna(outcomes["encounter_key"].map(patient_of_encounter))
    frame = pd.DataFrame(
        {
            "entity_id": entity,
            "context_id": outcomes["encounter_key"].fillna(encounter_of_card),
            "type": outcomes["label"],
            "time": outcomes["observed_at"],
            "value": outcomes["value"].astype(float),
        }
    )
    return frame.dropna(subset=["entity_id"])


def _feedback_events(feedback: pd.DataFrame, raw: pd.DataFrame) -> pd.DataFrame:
    if feedback.empty:
        return pd.DataFrame(columns=EVENT_COLUMNS)
    ids = raw.set_index("card_uuid")
    return pd.DataFrame(
        {
            "entity_id": feedback["card_uuid"].map(ids["patient_key"]),
            "context_id": feedback["card_uuid"].map(ids["encounter_key"]),
            "type": "card_" + feedback["outcome"].astype(str),
            "time": feedback["outcome_timestamp"],
            "value": 1.0,
        }
    )


def usage_config(label: str, features: list[str]) -> dict[str, object]:
    return {
        "data_usage": {
            "entity_id": "entity_id",
            "context_id": "context_id",
            "primary_output": "score",
            "primary_target": label,
            "predict_time": "prediction_time",
            "features": features,
            "cohorts": [{"source": cohort} for cohort in COHORTS],
            "event_table": {"type": "type", "time": "time", "value": "value"},
            "events": [
                {
                    "source": label,
                    "display_name": label,
                    "usage": "target",
                    "window_hr": 24 * 45,
                    "offset_hr": 0,
                    "combine_strategy": "max",
                },
                {"source": "card_overridden", "display_name": "card_overridden"},
                {"source": "card_accepted", "display_name": "card_accepted"},
            ],
            "censor_min_count": 10,
        }
    }


def write_export(
    predictions: pd.DataFrame, events: pd.DataFrame, out: Path, fmt: Format, label: str
) -> ExportResult:
    out.mkdir(parents=True, exist_ok=True)
    paths = (out / f"predictions.{fmt}", out / f"events.{fmt}", out / "usage_config.yml")
    for frame, path in zip((predictions, events), paths, strict=False):
        if fmt == "parquet":
            frame.to_parquet(path, index=False)
        else:
            frame.to_csv(path, index=False)
    features = [column for column in predictions.columns if column.startswith("feature_")]
    paths[2].write_text(yaml.safe_dump(usage_config(label, features), sort_keys=False))
    return ExportResult(len(predictions), len(events), paths)
