"""Direct looks into the database a test's app wrote to."""

from __future__ import annotations

from sqlalchemy import create_engine, text


def feedback_rows(database_url: str) -> int:
    """How many feedback rows are stored."""
    engine = create_engine(database_url)
    try:
        with engine.connect() as connection:
            return int(connection.execute(text("SELECT count(*) FROM feedback")).scalar_one())
    finally:
        engine.dispose()
