"""Serve the gRPC CloudEventService, with TLS (and mTLS when a client CA is given)."""

from __future__ import annotations

from pathlib import Path

import databases
import grpc

from protocol.grpc import cloudevent_pb2_grpc as pb_grpc
from server.grpc.service import CloudEventService
from server.services.watch import StatusFeed
from server.settings import Settings

MAX_RECEIVE_BYTES = 4 * 1024 * 1024


def credentials(settings: Settings) -> grpc.ServerCredentials | None:
    if not settings.grpc_tls_cert_file:
        return None
    if not settings.grpc_tls_key_file:
        raise ValueError("--grpc-tls-key-file is required with --grpc-tls-cert-file")
    pair = (Path(settings.grpc_tls_key_file).read_bytes(), Path(settings.grpc_tls_cert_file).read_bytes())
    ca = Path(settings.grpc_client_ca_file).read_bytes() if settings.grpc_client_ca_file else None
    return grpc.ssl_server_credentials([pair], root_certificates=ca, require_client_auth=ca is not None)


async def start(
    settings: Settings, db: databases.Database, feed: StatusFeed, *, port: int | None = None
) -> tuple[grpc.aio.Server, int]:
    """Start serving; returns the server and the bound port."""
    server = grpc.aio.server(options=[("grpc.max_receive_message_length", MAX_RECEIVE_BYTES)])
    service = CloudEventService(db, feed, origin=settings.source_id)
    pb_grpc.add_CloudEventServiceServicer_to_server(service, server)  # type: ignore[no-untyped-call]
    address = f"{settings.server_hostname}:{settings.grpc_server_bindport if port is None else port}"
    creds = credentials(settings)
    bound = server.add_secure_port(address, creds) if creds else server.add_insecure_port(address)
    await server.start()
    return server, bound
