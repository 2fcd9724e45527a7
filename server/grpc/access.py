"""Who may call the CloudEventService, and for which sources (upstream: reference §2.4).

Authentication: a bearer JWT in the ``authorization`` metadata, checked against the JWKS that REST uses, names its
``sub``; a client certificate verified by ``--grpc-client-ca-file`` names its CN. A token wins over the connection's
certificate, since it is the caller's own credential for this call. An invalid token is refused even on a
certified connection: a client that sends one expects it to count.

Authorization is per source, as upstream's ``/sources/<source>`` SubjectAccessReview: ``Publish`` acts for the
event's ``source``, ``Subscribe`` for the request's ``source``. ``--grpc-authorizer-config`` is a YAML mapping of
subject to the source ids it may act for (``"*"``: any); without it a subject may act only for the source id equal
to its own name. With the file, it is the whole policy: a subject it does not list may act for nothing.

Upstream (in mock mode, its default) lets anyone in; we refuse unless ``--disable-auth`` says otherwise.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal, NoReturn

import grpc
import yaml

from server import auth

log = logging.getLogger(__name__)

ANY_SOURCE: Final = "*"
AUTHORIZATION_METADATA: Final = "authorization"
CN_PROPERTY: Final = "x509_common_name"


@dataclass(frozen=True)
class Identity:
    subject: str
    method: Literal["token", "certificate", "none"]

    def __str__(self) -> str:
        return f"{self.subject!r} ({self.method})"


class SourcePolicy:
    """Which source ids each subject may act for. ``grants`` None is the default: a subject's own name."""

    def __init__(self, grants: Mapping[str, frozenset[str]] | None = None) -> None:
        self.grants = grants

    @classmethod
    def load(cls, path: str) -> SourcePolicy:
        """Read an authorizer config; ValueError says what is wrong with it."""
        try:
            document = yaml.safe_load(Path(path).read_text())
        except (OSError, yaml.YAMLError) as exc:
            raise ValueError(f"cannot read it: {' '.join(str(exc).split())}") from None  # NB: YAML's are multi-line
        if document is None:
            document = {}
        if not isinstance(document, dict):
            raise ValueError("expected a mapping of subject to a list of source ids")
        grants: dict[str, frozenset[str]] = {}
        for subject, sources in document.items():
            if isinstance(sources, str):
                sources = [sources]
            if not isinstance(subject, str) or not subject:
                raise ValueError(f"subject {subject!r} is not a non-empty string")
            if not isinstance(sources, list) or not all(isinstance(s, str) and s for s in sources):
                raise ValueError(f"subject {subject!r}: expected a list of source ids, not {sources!r}")
            grants[subject] = frozenset(sources)
        return cls(grants)

    def allows(self, subject: str, source: str) -> bool:
        if self.grants is None:
            return source == subject
        allowed = self.grants.get(subject, frozenset())
        return ANY_SOURCE in allowed or source in allowed


class Guard:
    """Authenticate each call and authorize it for a source; every refusal aborts the call with its status."""

    def __init__(self, *, verifier: auth.Verifier | None, policy: SourcePolicy) -> None:
        self.verifier = verifier
        self.policy = policy

    async def identify(self, context: grpc.aio.ServicerContext[Any, Any]) -> Identity:
        metadata = {key: value for key, value in context.invocation_metadata() or () if isinstance(value, str)}
        given = metadata.get(AUTHORIZATION_METADATA)
        if given is not None:
            token = auth.bearer(given)
            if token is None:
                await _abort(context, grpc.StatusCode.UNAUTHENTICATED, "authorization metadata is not 'Bearer <JWT>'")
            if self.verifier is None:
                await _abort(
                    context, grpc.StatusCode.UNAUTHENTICATED, "bearer tokens are not accepted: no JWKS is configured"
                )
            try:
                claims = await self.verifier.verify(token)
            except auth.InvalidTokenError as exc:
                await _abort(context, grpc.StatusCode.UNAUTHENTICATED, str(exc))
            subject = claims.get("sub")
            if not isinstance(subject, str) or not subject:
                await _abort(context, grpc.StatusCode.UNAUTHENTICATED, "Bearer token has no 'sub' claim")
            return Identity(subject, "token")
        names = list(context.auth_context().get(CN_PROPERTY) or ())
        if not names:
            await _abort(
                context,
                grpc.StatusCode.UNAUTHENTICATED,
                "no credentials: send 'authorization: Bearer <JWT>' metadata or a client certificate",
            )
        return Identity(names[0].decode("utf-8", "replace"), "certificate")

    async def authorize(self, context: grpc.aio.ServicerContext[Any, Any], identity: Identity, source: str) -> None:
        """Return if ``identity`` may act for ``source``; otherwise abort the call."""
        if not self.policy.allows(identity.subject, source):
            log.warning("refused %s acting for source %r from %s", identity, source, context.peer())
            await _abort(
                context,
                grpc.StatusCode.PERMISSION_DENIED,
                f"subject {identity.subject!r} may not act for source {source!r}",
            )


class Open(Guard):
    """No authentication and no authorization: ``--disable-auth``, or nothing configured on loopback."""

    ANONYMOUS: Final = Identity("anonymous", "none")

    def __init__(self) -> None:
        super().__init__(verifier=None, policy=SourcePolicy())

    async def identify(self, context: grpc.aio.ServicerContext[Any, Any]) -> Identity:
        return self.ANONYMOUS

    async def authorize(self, context: grpc.aio.ServicerContext[Any, Any], identity: Identity, source: str) -> None:
        return


async def _abort(context: grpc.aio.ServicerContext[Any, Any], code: grpc.StatusCode, reason: str) -> NoReturn:
    await context.abort(code, reason)
    raise AssertionError("unreachable: abort raises")  # NB: for type-checking; grpc.aio's abort always raises.
