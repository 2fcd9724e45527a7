"""Bearer JWT verification against a JWKS (file or URL): the one check REST and gRPC share.

Keys from a URL are cached and refetched when a token names an unknown ``kid`` (at most every 30 s), so key
rotation at the issuer needs no restart. Only asymmetric algorithms are accepted: a JWKS publishes public keys,
and accepting ``HS*`` or ``none`` would let anyone mint tokens.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import httpx
import jwt

from server.settings import Settings

ALGORITHMS = ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"]
REFRESH_INTERVAL = 30.0


class InvalidTokenError(Exception):
    """The token is not acceptable; the message is user-facing."""


def bearer(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` value (HTTP header or gRPC metadata), if it is one."""
    if authorization:
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return token.strip()
    return None


def verifier(settings: Settings) -> Verifier | None:
    """The verifier for the configured JWKS; None when tokens are not checked (none configured, or auth off)."""
    if not settings.auth_enabled:
        return None
    return Verifier(
        jwks_file=settings.auth.jwk_cert_file,
        jwks_url=settings.auth.jwk_cert_url,
        issuer=settings.auth.jwt_issuer,
        audience=settings.auth.jwt_audience,
    )


class Verifier:
    def __init__(
        self,
        *,
        jwks_file: str | None = None,
        jwks_url: str | None = None,
        issuer: str | None = None,
        audience: str | None = None,
    ) -> None:
        if not jwks_file and not jwks_url:
            raise ValueError("a JWKS file or URL is required to verify tokens")
        self.jwks_file, self.jwks_url = jwks_file, jwks_url
        self.issuer, self.audience = issuer, audience
        self._keys: dict[str, jwt.PyJWK] = {}
        self._fetched_at = 0.0
        self._lock = asyncio.Lock()

    async def _load(self) -> None:
        if self.jwks_file:
            document = json.loads(await asyncio.to_thread(Path(self.jwks_file).read_text))
        else:
            assert self.jwks_url
            async with httpx.AsyncClient(timeout=10.0) as client:
                response = await client.get(self.jwks_url)
                response.raise_for_status()
                document = response.json()
        keyset = jwt.PyJWKSet.from_dict(document)
        self._keys = {str(k.key_id or i): k for i, k in enumerate(keyset.keys)}
        self._fetched_at = time.monotonic()

    async def _key(self, kid: str | None) -> jwt.PyJWK:
        async with self._lock:
            stale = time.monotonic() - self._fetched_at > REFRESH_INTERVAL
            if not self._keys or (kid not in self._keys and stale):
                try:
                    await self._load()
                except (OSError, ValueError, httpx.HTTPError, jwt.PyJWTError) as exc:
                    if not self._keys:
                        raise InvalidTokenError(f"cannot load the signing keys: {exc}") from None
        if kid is None and len(self._keys) == 1:
            return next(iter(self._keys.values()))
        if kid is None or kid not in self._keys:
            raise InvalidTokenError("Bearer token is signed with an unknown key")
        return self._keys[kid]

    async def verify(self, token: str) -> dict[str, Any]:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise InvalidTokenError(f"Bearer token is malformed: {exc}") from None
        if header.get("alg") not in ALGORITHMS:
            raise InvalidTokenError(f"Bearer token algorithm {header.get('alg')!r} is not accepted")
        key = await self._key(header.get("kid"))
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key.key,
                algorithms=[str(header["alg"])],
                audience=self.audience,
                issuer=self.issuer,
                options={"require": ["exp"], "verify_aud": self.audience is not None},
            )
        except jwt.ExpiredSignatureError:
            raise InvalidTokenError("Bearer token is expired") from None
        except jwt.PyJWTError as exc:
            raise InvalidTokenError(f"Bearer token is invalid: {exc}") from None
        return claims
