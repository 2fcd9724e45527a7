"""Serve the gRPC CloudEventService, with TLS (and mTLS when a client CA is given) and per-source authorization."""

from __future__ import annotations

import logging
from pathlib import Path

import databases
import grpc

from protocol.grpc import cloudevent_pb2_grpc as pb_grpc
from server import auth
from server.grpc import access
from server.grpc.service import CloudEventService
from server.services.watch import StatusFeed
from server.settings import Settings

log = logging.getLogger(__name__)

MAX_RECEIVE_BYTES = 4 * 1024 * 1024
OPTIONS = [
    ("grpc.max_receive_message_length", MAX_RECEIVE_BYTES),
    # NB: gRPC sets SO_REUSEPORT by default, so a second hub on the same port binds too and the kernel splits new
    # connections between the two. One port, one server: the second must fail to start.
    ("grpc.so_reuseport", 0),
]


class BindError(Exception):
    """gRPC could not listen on the configured address."""


def credentials(settings: Settings) -> grpc.ServerCredentials | None:
    if not settings.grpc.grpc_tls_cert_file:
        if settings.grpc.grpc_client_ca_file:
            raise ValueError("--grpc-client-ca-file needs --grpc-tls-cert-file and --grpc-tls-key-file")
        return None
    if not settings.grpc.grpc_tls_key_file:
        raise ValueError("--grpc-tls-key-file is required with --grpc-tls-cert-file")
    pair = (Path(settings.grpc.grpc_tls_key_file).read_bytes(), Path(settings.grpc.grpc_tls_cert_file).read_bytes())
    ca = Path(settings.grpc.grpc_client_ca_file).read_bytes() if settings.grpc.grpc_client_ca_file else None
    return grpc.ssl_server_credentials([pair], root_certificates=ca, require_client_auth=ca is not None)


def policy(settings: Settings) -> access.SourcePolicy:
    """The per-source policy (ValueError, naming the flag, for a bad authorizer config)."""
    if not settings.grpc.grpc_authorizer_config:
        return access.SourcePolicy()
    try:
        return access.SourcePolicy.load(settings.grpc.grpc_authorizer_config)
    except ValueError as exc:
        raise ValueError(f"--grpc-authorizer-config {settings.grpc.grpc_authorizer_config}: {exc}") from None


def guard(settings: Settings) -> access.Guard:
    """Who may call, from the settings (ValueError for a bad authorizer config); logs what is open."""
    if not settings.grpc_auth_enabled:
        if settings.auth.disable_auth:
            log.warning("gRPC authentication is off (--disable-auth): anyone who reaches the port acts for any source")
        else:
            log.warning(
                "gRPC authentication is off: no --jwk-cert-file, --jwk-cert-url or --grpc-client-ca-file is configured"
            )
        if settings.grpc.grpc_authorizer_config:
            log.warning("--grpc-authorizer-config is ignored: gRPC authentication is off")
        return access.Open()
    sources = policy(settings)
    if settings.auth_enabled and not settings.grpc.grpc_tls_cert_file:
        log.warning("gRPC has no TLS: bearer tokens cross the network in clear text (set --grpc-tls-cert-file)")
    return access.Guard(verifier=auth.verifier(settings), policy=sources)


async def start(
    settings: Settings, db: databases.Database, feed: StatusFeed, *, port: int | None = None
) -> tuple[grpc.aio.Server, int]:
    """Start serving; returns the server and the bound port. ValueError for bad settings, BindError."""
    creds = credentials(settings)
    service = CloudEventService(db, feed, settings, guard=guard(settings))
    server = grpc.aio.server(options=OPTIONS)
    pb_grpc.add_CloudEventServiceServicer_to_server(service, server)  # type: ignore[no-untyped-call]
    address = f"{settings.http.server_hostname}:{settings.grpc.grpc_server_bindport if port is None else port}"
    try:
        bound = server.add_secure_port(address, creds) if creds else server.add_insecure_port(address)
    except RuntimeError as exc:
        raise BindError(str(exc)) from None
    await server.start()
    return server, bound
