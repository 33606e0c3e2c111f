"""Signing keys and JWTs for tests, made the way a CDS client makes them."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm


@dataclass
class SigningKey:
    """A private key with its kid and algorithm; ``public_jwk`` is what the client publishes."""

    algorithm: str
    kid: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    private_key: Any = None

    def __post_init__(self) -> None:
        if self.private_key is None:
            if self.algorithm.startswith("ES"):
                curve = {"ES256": ec.SECP256R1(), "ES384": ec.SECP384R1()}[self.algorithm]
                self.private_key = ec.generate_private_key(curve)
            else:
                self.private_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)

    @property
    def public_jwk(self) -> dict[str, Any]:
        algorithm = ECAlgorithm if self.algorithm.startswith("ES") else RSAAlgorithm
        jwk = algorithm.to_jwk(self.private_key.public_key(), as_dict=True)
        return {**jwk, "kid": self.kid, "alg": self.algorithm, "use": "sig"}

    def sign(self, claims: dict[str, Any], **extra_headers: Any) -> str:
        headers = {"kid": self.kid, "typ": "JWT", **extra_headers}
        return jwt.encode(claims, self.private_key, algorithm=self.algorithm, headers=headers)


def jwks(*keys: SigningKey) -> dict[str, Any]:
    return {"keys": [key.public_jwk for key in keys]}


def client_claims(iss: str, aud: str, *, lifetime: int = 300, **extra: Any) -> dict[str, Any]:
    """The claims a CDS client puts in its token for one call to ``aud``."""
    now = int(time.time())
    return {
        "iss": iss,
        "aud": aud,
        "exp": now + lifetime,
        "iat": now,
        "jti": str(uuid.uuid4()),
        **extra,
    }
