"""Pseudonymous keys for patients and encounters: keyed HMACs, never the raw identifier.

The key comes from ``BEDSIDE_AUDIT_HMAC_KEY``. For a local trial on the embedded SQLite store a
key may be generated once and kept beside the database file (with a warning); anywhere else a
missing key is an error, because keys generated per process would make one patient look like
many.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import secrets
from pathlib import Path

from sqlalchemy.engine import make_url

log = logging.getLogger(__name__)
MIN_KEY_BYTES = 32
KEY_FILE_NAME = "audit-hmac.key"


def pseudonymizer_for(database_url: str, configured: str | None) -> Pseudonymizer:
    """The pseudonymizer for a store: the configured key, or a local trial's kept key."""
    url = make_url(database_url)
    folder = None
    if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
        folder = Path(url.database).resolve().parent
    return Pseudonymizer(load_key(configured, folder, local_trial=folder is not None))


class MissingAuditKey(RuntimeError):
    """No HMAC key is configured where one is required."""


class Pseudonymizer:
    def __init__(self, key: bytes) -> None:
        if len(key) < MIN_KEY_BYTES:
            raise ValueError(f"the audit HMAC key must have at least {MIN_KEY_BYTES} bytes")
        self._key = key

    def key_for(self, kind: str, identifier: str) -> str:
        """A stable pseudonym for ``kind`` (e.g. "Patient") + ``identifier``."""
        message = f"{kind}\x00{identifier}".encode()
        return hmac.new(self._key, message, hashlib.sha256).hexdigest()

    def __repr__(self) -> str:  # never show the key
        return "Pseudonymizer(<key hidden>)"


def load_key(configured: str | None, sqlite_folder: Path | None, *, local_trial: bool) -> bytes:
    """The configured key, or (local trials on SQLite only) a key kept beside the database."""
    if configured:
        return configured.encode()
    if not local_trial or sqlite_folder is None:
        raise MissingAuditKey("set BEDSIDE_AUDIT_HMAC_KEY (at least 32 random bytes)")
    path = sqlite_folder / KEY_FILE_NAME
    if not path.exists():
        _create_key_file(path)
    return path.read_text().strip().encode()


def _create_key_file(path: Path) -> None:
    """Write a new key atomically: workers starting together all end up with the same one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    draft = path.with_name(f".{path.name}.{secrets.token_hex(8)}")
    with os.fdopen(os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as handle:
        handle.write(secrets.token_hex(MIN_KEY_BYTES))
    try:
        os.link(draft, path)  # fails when another worker was first
    except FileExistsError:
        return
    finally:
        draft.unlink()
    log.warning(
        "generated an audit HMAC key for this local trial; set BEDSIDE_AUDIT_HMAC_KEY "
        "before using real patients",
        extra={"key_file": str(path)},
    )
