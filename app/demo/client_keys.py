"""The demo EHR's identity: an ES384 key pair, pinned inline in a trusted-clients file.

Bedside verifies the demo's calls exactly as it verifies a real EHR's (``BEDSIDE_CLIENTS_FILE``);
no insecure development mode is needed.
"""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm

DEMO_ISSUER = "https://ehr.demo.invalid/cds-client"
ALGORITHM = "ES384"
TOKEN_LIFETIME_SECONDS = 300


class DemoClientKey:
    """Signs one short-lived JWT per CDS call, with ``aud`` set to the exact URL called."""

    def __init__(self, issuer: str = DEMO_ISSUER) -> None:
        self.issuer = issuer
        self.kid = uuid.uuid4().hex[:12]
        self._private = ec.generate_private_key(ec.SECP384R1())

    @property
    def public_jwk(self) -> dict[str, Any]:
        jwk = ECAlgorithm.to_jwk(self._private.public_key(), as_dict=True)
        return {**jwk, "kid": self.kid, "alg": ALGORITHM, "use": "sig"}

    def write_clients_file(self, path: Path) -> Path:
        """The trusted-clients file (JSON) naming this issuer with its public key inline."""
        entry = {"iss": self.issuer, "jwks": {"keys": [self.public_jwk]}}
        path.write_text(json.dumps([entry], indent=2), encoding="utf-8")
        return path

    def token(self, url: str) -> str:
        now = int(time.time())
        claims = {
            "iss": self.issuer,
            "sub": "demo-ehr",
            "aud": url,
            "iat": now,
            "exp": now + TOKEN_LIFETIME_SECONDS,
            "jti": str(uuid.uuid4()),
        }
        headers = {"kid": self.kid, "typ": "JWT"}
        return jwt.encode(claims, self._private, algorithm=ALGORITHM, headers=headers)
