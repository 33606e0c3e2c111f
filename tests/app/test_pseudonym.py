"""Pseudonymous keys: stable per identifier, keyed, and never the identifier itself."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from app.audit.pseudonym import KEY_FILE_NAME, MissingAuditKey, Pseudonymizer, load_key

KEY = b"k" * 32


def test_same_identifier_same_key_and_kinds_are_kept_apart() -> None:
    pseudonyms = Pseudonymizer(KEY)
    patient = pseudonyms.key_for("Patient", "pat-SECRET-123")
    assert patient == pseudonyms.key_for("Patient", "pat-SECRET-123")
    assert patient != pseudonyms.key_for("Encounter", "pat-SECRET-123")
    assert "SECRET" not in patient and len(patient) == 64


def test_another_key_gives_other_pseudonyms() -> None:
    other = Pseudonymizer(b"x" * 32).key_for("Patient", "p1")
    assert other != Pseudonymizer(KEY).key_for("Patient", "p1")


def test_short_keys_are_refused_and_the_key_is_never_shown() -> None:
    with pytest.raises(ValueError):
        Pseudonymizer(b"short")
    assert "k" * 32 not in repr(Pseudonymizer(KEY))


def test_configured_key_is_used_as_given(tmp_path: Path) -> None:
    assert load_key("a" * 40, tmp_path, local_trial=True) == b"a" * 40
    assert not (tmp_path / KEY_FILE_NAME).exists()


def test_outside_local_trials_a_missing_key_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(MissingAuditKey):
        load_key(None, tmp_path, local_trial=False)
    with pytest.raises(MissingAuditKey):
        load_key(None, None, local_trial=True)


def test_local_trial_generates_one_private_key_beside_the_database(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    first = load_key(None, tmp_path, local_trial=True)
    second = load_key(None, tmp_path, local_trial=True)
    assert first == second and len(first) == 64
    mode = stat.S_IMODE((tmp_path / KEY_FILE_NAME).stat().st_mode)
    assert mode == 0o600
    assert sum("generated an audit HMAC key" in r.getMessage() for r in caplog.records) == 1
