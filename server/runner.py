"""``maestro server``: wire the database, the listeners and the background services, run until signalled."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import signal
import socket
from collections.abc import AsyncIterator, Iterator

import asyncpg
import databases
import psycopg
import uvicorn
from starlette.applications import Starlette

from protocol import mqtt_config
from protocol.errors import ConfigError
from server import app as app_mod
from server import dsn, embedded, health, listeners, migrate
from server.dispatch import embedded_mqtt, instances, listen
from server.dispatch.transport import Transport, supervise
from server.grpc import server as grpc_server_mod
from server.services import watch
from server.settings import Settings
from server.store import db as store_db
from server.store import logs

log = logging.getLogger(__name__)


class StartupError(Exception):
    """The hub cannot start; the message says why, for one clear line on stderr."""


class _Server(uvicorn.Server):
    """A uvicorn server that leaves signals to us (several run in one process and stop together), and ticks once a
    second rather than ten times (its tick refreshes the ``Date`` header; a hub at rest should not wake for
    nothing), stopping as soon as it is told."""

    def __init__(self, config: uvicorn.Config) -> None:
        self._exit = asyncio.Event()
        super().__init__(config)

    @property
    def should_exit(self) -> bool:
        return self._exit.is_set()

    @should_exit.setter
    def should_exit(self, value: bool) -> None:
        if value:
            self._exit.set()
        else:
            self._exit.clear()

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield

    async def main_loop(self) -> None:
        counter = 0
        while not await self.on_tick(counter):
            counter = (counter + 10) % 864000  # NB: uvicorn does its once-a-second work when counter % 10 == 0
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(1.0):
                    await self._exit.wait()


def _server(app: Starlette, settings: Settings, port: int) -> uvicorn.Server:
    config = uvicorn.Config(
        app,
        host=settings.server_hostname,
        port=port,
        http=listeners.http_protocol(settings.http_read_timeout),
        log_config=None,
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=10,
    )
    return _Server(config)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _check_auth(settings: Settings) -> None:
    """Refuse to serve a network address without authentication, unless --disable-auth says so; check the gRPC
    security flags before anything starts."""
    if not settings.disable_auth and not settings.auth_enabled and not _is_loopback(settings.server_hostname):
        raise StartupError(
            f"no authentication is configured for {settings.server_hostname}: pass --jwk-cert-file or"
            " --jwk-cert-url (bearer JWTs on REST and gRPC), or --disable-auth to serve it to anyone"
        )
    if not settings.enable_grpc_server:
        return
    try:
        grpc_server_mod.credentials(settings)
        if settings.grpc_auth_enabled:
            grpc_server_mod.policy(settings)
    except ValueError as exc:
        raise StartupError(str(exc)) from None
    except OSError as exc:
        raise StartupError(f"cannot read the gRPC TLS files: {exc}") from None


def _claim_ports(settings: Settings) -> dict[str, socket.socket]:
    """Bind the HTTP listeners and check the gRPC port is free, before anything else starts."""
    host = settings.server_hostname
    wanted = {
        "REST": settings.http_server_bindport,
        "health": settings.health_check_server_bindport,
        "metrics": settings.metrics_server_bindport,
    }
    taken: dict[str, socket.socket] = {}
    try:
        for name, port in wanted.items():
            taken[name] = listeners.bind(host, port, name)
        if settings.enable_grpc_server:
            listeners.probe(host, settings.grpc_server_bindport, "gRPC")
    except listeners.ListenError as exc:
        for sock in taken.values():
            sock.close()
        raise StartupError(str(exc)) from None
    return taken


async def run(settings: Settings) -> int:
    try:
        broker_config = mqtt_config.load(settings.mqtt_config_file) if settings.mqtt_config_file else None
    except ConfigError as exc:
        raise StartupError(f"--mqtt-config-file {settings.mqtt_config_file}: {exc}") from None
    _check_auth(settings)
    sockets = _claim_ports(settings)
    try:
        return await _start(settings, broker_config, sockets)
    finally:
        for sock in sockets.values():
            sock.close()


async def _start(
    settings: Settings, broker_config: mqtt_config.MQTTConfig | None, sockets: dict[str, socket.socket]
) -> int:
    pg = None
    url = settings.db_url
    if not url:
        pg = embedded.EmbeddedPostgres(embedded.data_dir(settings.data_dir))
        url = await asyncio.to_thread(pg.start)
    try:
        try:
            if settings.auto_migrate or pg is not None:
                await asyncio.to_thread(migrate.apply, url)
            database = store_db.database(url, max_size=settings.db_max_open_connections)
            await database.connect()
        except ValueError as exc:
            raise StartupError(str(exc)) from None
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, psycopg.Error) as exc:
            raise StartupError(f"cannot connect to the database at {dsn.redact(url)}: {exc}") from None
        try:
            return await _run(settings, database, url, broker_config, sockets)
        finally:
            await database.disconnect()
    finally:
        if pg is not None:
            await asyncio.to_thread(pg.stop)


async def _run(
    settings: Settings,
    database: databases.Database,
    url: str,
    broker_config: mqtt_config.MQTTConfig | None,
    sockets: dict[str, socket.socket],
) -> int:
    """The background services as named tasks around the listeners; everything stops together."""
    registry = instances.Registry(database, settings.client_id, interval=settings.heartbeat_interval)
    feed = watch.StatusFeed(poll_interval=settings.dispatch_poll_interval)
    background = [
        asyncio.create_task(registry.run(), name="instance-registry"),
        asyncio.create_task(feed.run(), name="status-feed"),
        asyncio.create_task(listen.listen(dsn.plain(url), logs.STATUS_CHANNEL, feed.wake), name="status-listen"),
    ]
    grpc_server = None
    try:
        if settings.enable_grpc_server:
            try:
                grpc_server, port = await grpc_server_mod.start(settings, database, feed)
            except grpc_server_mod.BindError:
                # NB: the port was free a moment ago (_claim_ports); say why it is not now.
                try:
                    listeners.probe(settings.server_hostname, settings.grpc_server_bindport, "gRPC")
                except listeners.ListenError as exc:
                    raise StartupError(str(exc)) from None
                where = f"{settings.server_hostname}:{settings.grpc_server_bindport}"
                raise StartupError(f"cannot listen on {where} (gRPC)") from None
            except (OSError, ValueError) as exc:
                raise StartupError(f"cannot serve gRPC on port {settings.grpc_server_bindport}: {exc}") from None
            log.info("gRPC CloudEventService listening on %s:%d", settings.server_hostname, port)
        async with _transport(settings, database, url, registry, broker_config) as transport:
            return await _serve(settings, database, transport, registry, feed, sockets)
    finally:
        if grpc_server is not None:
            await grpc_server.stop(grace=5)
        for task in background:
            task.cancel()
        await asyncio.gather(*background, return_exceptions=True)


@contextlib.asynccontextmanager
async def _transport(
    settings: Settings,
    database: databases.Database,
    url: str,
    registry: instances.Registry,
    config: mqtt_config.MQTTConfig | None,
) -> AsyncIterator[Transport]:
    """The MQTT transport as a named, supervised task (with an embedded broker when none is configured)."""
    broker: embedded_mqtt.EmbeddedBroker | None = None
    if config is None:
        broker = embedded_mqtt.EmbeddedBroker(
            port=settings.embedded_mqtt_port, data_dir=embedded.data_dir(settings.data_dir)
        )
        try:
            await broker.start()
        except Exception as exc:  # NB: amqtt raises its own types for a busy port.
            raise StartupError(
                f"cannot start the embedded MQTT broker on 127.0.0.1:{settings.embedded_mqtt_port} ({exc});"
                " pass --embedded-mqtt-port or --mqtt-config-file"
            ) from None
        config = broker.config(settings.source_id)
        log.info(
            "embedded MQTT broker: agents log in with a user from `maestro agent-config --consumer NAME` (users in %s)",
            broker.users.path,
        )
    elif not config.username and not config.client_cert_file:
        log.warning(
            "MQTT broker %s:%d: the hub connects without credentials; if the broker accepts that, anyone who can"
            " reach it reads every consumer's manifests (give it a password file and an ACL: maestro mqtt acl)",
            config.host,
            config.port,
        )
    transport = Transport(settings, database, config, dsn=dsn.plain(url), registry=registry)
    task = asyncio.create_task(supervise(transport), name="transport")
    try:
        yield transport
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        if broker is not None:
            await broker.stop()


async def _serve(
    settings: Settings,
    database: databases.Database,
    transport: Transport,
    registry: instances.Registry,
    feed: watch.StatusFeed,
    sockets: dict[str, socket.socket],
) -> int:
    async def ready() -> bool:
        async with store_db.connection(database) as conn:
            db_ok = bool(await conn.fetchval("SELECT true"))
        return db_ok and transport.connected and registry.registered.is_set()

    servers = {
        "REST": _server(
            app_mod.create_app(settings, database=database, feed=feed), settings, settings.http_server_bindport
        ),
        "health": _server(health.health_app(ready), settings, settings.health_check_server_bindport),
        "metrics": _server(health.metrics_app(), settings, settings.metrics_server_bindport),
    }
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    tasks = [
        asyncio.create_task(s.serve(sockets=[sockets[name]]), name=f"uvicorn:{name}:{s.config.port}")
        for name, s in servers.items()
    ]
    log.info(
        "maestro server %s listening on %s: REST %d, health %d, metrics %d",
        settings.client_id,
        settings.server_hostname,
        settings.http_server_bindport,
        settings.health_check_server_bindport,
        settings.metrics_server_bindport,
    )
    stopper = asyncio.create_task(stop.wait(), name="stop-signal")
    done, _ = await asyncio.wait([*tasks, stopper], return_when=asyncio.FIRST_COMPLETED)
    for s in servers.values():
        s.should_exit = True
    await asyncio.gather(*tasks, return_exceptions=True)
    stopper.cancel()
    failed = [t for t in tasks if t in done and (t.exception() or not t.result())] if stopper not in done else []
    return 1 if failed else 0
