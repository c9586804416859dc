"""Who may use the registry: operator clients, each with its own bearer token.

The registry registers, retires and commands devices, so every route under /v1 needs an
``Authorization: Bearer <token>`` naming one of the operator clients the program lists
(``city_apis.device_registry.operator_clients``; each token a stack secret, handed to the Pods
in OPERATOR_TOKENS). The health routes stay open for the kubelet's probes. No tokens means no
client at all: every /v1 request is refused, never accepted.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import Mapping
from typing import Annotated

from fastapi import Header, HTTPException, status
from pydantic import SecretStr

log = logging.getLogger(__name__)

SCHEME = "Bearer"


def _digest(token: str) -> bytes:
    # Compared as fixed-length digests: hmac.compare_digest is constant-time only for inputs
    # of equal length, and a token's length is no business of the caller's.
    return hashlib.sha256(token.encode()).digest()


class OperatorTokens:
    """A FastAPI dependency: the name of the operator client whose token the request carries,
    or 401 (no token, a malformed header or a token of nobody)."""

    def __init__(self, tokens: Mapping[str, SecretStr]) -> None:
        self._digests = {client: _digest(token.get_secret_value()) for client, token in tokens.items()}
        if not self._digests:
            log.warning("no operator tokens (OPERATOR_TOKENS): every /v1 request is refused")

    def client(self, token: str) -> str | None:
        """The client holding ``token``; every client's digest is compared, whatever matches."""
        offered = _digest(token)
        found = None
        for client, digest in self._digests.items():
            if hmac.compare_digest(offered, digest):
                found = client
        return found

    def __call__(self, authorization: Annotated[str | None, Header()] = None) -> str:
        scheme, _, token = (authorization or "").partition(" ")
        client = self.client(token.strip()) if scheme.lower() == SCHEME.lower() and token.strip() else None
        if client is None:
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED,
                "an operator client's bearer token is required (Authorization: Bearer <token>)",
                headers={"WWW-Authenticate": SCHEME},
            )
        return client
