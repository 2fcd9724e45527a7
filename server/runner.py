"""``maestro server``: wire the database, the listeners and the background services, run until signalled."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import signal
import socket
from collections.abc import AsyncIterator

import asyncpg
import databases
import psycopg

from protocol import mqtt_config
from protocol.errors import ConfigError
from server import app as app_mod
from server import dsn, embedded, health, heap, listeners, migrate, tasks, workers
from server.dispatch import embedded_mqtt, instances, listen, summary
from server.dispatch.transport import Transport, supervise
from server.grpc import server as grpc_server_mod
from server.services import watch
from server.settings import Settings
from server.store import db as store_db
from server.store import logs

log = logging.getLogger(__name__)


class StartupError(Exception):
    """The hub cannot start; the message says why, for one clear line on stderr."""


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
    if not settings.auth.disable_auth and not settings.auth_enabled and not _is_loopback(settings.http.server_hostname):
        raise StartupError(
            f"no authentication is configured for {settings.http.server_hostname}: pass --jwk-cert-file or"
            " --jwk-cert-url (bearer JWTs on REST and gRPC), or --disable-auth to serve it to anyone"
        )
    if not settings.grpc.enable_grpc_server:
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
    host = settings.http.server_hostname
    wanted = {
        "REST": settings.http.http_server_bindport,
        "health": settings.http.health_check_server_bindport,
        "metrics": settings.http.metrics_server_bindport,
    }
    _distinct_ports(settings)
    taken: dict[str, socket.socket] = {}
    try:
        for name, port in wanted.items():
            taken[name] = listeners.bind(host, port, name)
        if settings.grpc.enable_grpc_server:
            listeners.probe(host, settings.grpc.grpc_server_bindport, "gRPC")
    except listeners.ListenError as exc:
        for sock in taken.values():
            sock.close()
        raise StartupError(str(exc)) from None
    return taken


def _distinct_ports(settings: Settings) -> None:
    """StartupError if two listeners are given one port (0, "any free port", excepted).

    NB: both binds would succeed (SO_REUSEADDR lets two sockets that do not listen yet share a port), and the
    second listener would fail only once serving, with the hub half started."""
    flags = {
        "--http-server-bindport": settings.http.http_server_bindport,
        "--health-check-server-bindport": settings.http.health_check_server_bindport,
        "--metrics-server-bindport": settings.http.metrics_server_bindport,
    }
    if settings.grpc.enable_grpc_server:
        flags["--grpc-server-bindport"] = settings.grpc.grpc_server_bindport
    seen: dict[int, str] = {}
    for flag, port in flags.items():
        if port and port in seen:
            raise StartupError(f"{flag} {port} is also {seen[port]}: each listener needs a port of its own")
        seen[port] = flag


async def run(settings: Settings) -> int:
    try:
        broker_config = (
            mqtt_config.load(settings.transport.mqtt_config_file) if settings.transport.mqtt_config_file else None
        )
    except ConfigError as exc:
        raise StartupError(f"--mqtt-config-file {settings.transport.mqtt_config_file}: {exc}") from None
    _check_auth(settings)
    if not 1 <= settings.http.http_workers <= 64:
        raise StartupError(f"--http-workers {settings.http.http_workers}: expected 1 to 64 processes")
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
    url = settings.database.db_url
    if not url:
        pg = embedded.EmbeddedPostgres(embedded.data_dir(settings.database.data_dir))
        url = await asyncio.to_thread(pg.start)
    try:
        try:
            if settings.database.auto_migrate or pg is not None:
                await asyncio.to_thread(migrate.apply, url)
            own_pool, _ = workers.pool_sizes(settings.database.db_max_open_connections, settings.http.http_workers)
            database = store_db.database(url, max_size=own_pool)
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
    """The background services as guarded tasks around the listeners; everything stops together, and the end of
    an essential one (a crash) stops the process with exit status 1 instead of serving without it."""
    registry = instances.Registry(database, settings.transport)
    feed = watch.StatusFeed(poll_interval=settings.dispatch.dispatch_poll_interval)
    crashed = tasks.Crashed()
    status_listen = listen.listen(dsn.plain(url), logs.STATUS_CHANNEL, feed.wake, settings.database)
    background = [
        tasks.create_guarded_task(registry.run(), name="instance-registry", crashed=crashed),
        tasks.create_guarded_task(feed.run(), name="status-feed", crashed=crashed),
        tasks.create_guarded_task(status_listen, name="status-listen", crashed=crashed),
    ]
    if settings.logging.log_summary_interval > 0:
        background.append(
            tasks.create_guarded_task(summary.run(settings.logging.log_summary_interval), name="activity-summary")
        )
    grpc_server = None
    try:
        if settings.grpc.enable_grpc_server:
            try:
                grpc_server, port = await grpc_server_mod.start(settings, database, feed)
            except grpc_server_mod.BindError:
                # NB: the port was free a moment ago (_claim_ports); say why it is not now.
                try:
                    listeners.probe(settings.http.server_hostname, settings.grpc.grpc_server_bindport, "gRPC")
                except listeners.ListenError as exc:
                    raise StartupError(str(exc)) from None
                where = f"{settings.http.server_hostname}:{settings.grpc.grpc_server_bindport}"
                raise StartupError(f"cannot listen on {where} (gRPC)") from None
            except (OSError, ValueError) as exc:
                raise StartupError(f"cannot serve gRPC on port {settings.grpc.grpc_server_bindport}: {exc}") from None
            log.info("gRPC CloudEventService listening on %s:%d", settings.http.server_hostname, port)
        async with _transport(settings, database, url, registry, broker_config, crashed) as transport:
            return await _serve(settings, database, url, transport, registry, feed, sockets, crashed)
    finally:
        if grpc_server is not None:
            await grpc_server.stop(grace=5)
        await tasks.stop(background, timeout=10)


@contextlib.asynccontextmanager
async def _transport(
    settings: Settings,
    database: databases.Database,
    url: str,
    registry: instances.Registry,
    config: mqtt_config.MQTTConfig | None,
    crashed: tasks.Crashed,
) -> AsyncIterator[Transport]:
    """The MQTT transport as a named, supervised task (with an embedded broker when none is configured)."""
    broker: embedded_mqtt.EmbeddedBroker | None = None
    if config is None:
        broker = embedded_mqtt.EmbeddedBroker(
            port=settings.transport.embedded_mqtt_port, data_dir=embedded.data_dir(settings.database.data_dir)
        )
        try:
            await broker.start()
        except Exception as exc:  # NB: amqtt raises its own types for a busy port.
            raise StartupError(
                f"cannot start the embedded MQTT broker on 127.0.0.1:{settings.transport.embedded_mqtt_port} ({exc});"
                " pass --embedded-mqtt-port or --mqtt-config-file"
            ) from None
        config = broker.config(settings.transport.source_id)
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
    task = tasks.create_guarded_task(supervise(transport), name="transport", crashed=crashed)
    try:
        yield transport
    finally:
        await tasks.stop([task], timeout=10)
        if broker is not None:
            await broker.stop()


async def _serve(
    settings: Settings,
    database: databases.Database,
    url: str,
    transport: Transport,
    registry: instances.Registry,
    feed: watch.StatusFeed,
    sockets: dict[str, socket.socket],
    crashed: tasks.Crashed,
) -> int:
    pool: workers.Workers | None = None
    if settings.http.http_workers > 1:
        _, pool_size = workers.pool_sizes(settings.database.db_max_open_connections, settings.http.http_workers)
        pool = workers.Workers(settings, url, sockets["REST"], pool_size)

    async def ready() -> bool:
        if crashed or (pool is not None and not pool.ready):
            return False
        async with store_db.connection(database) as conn:
            db_ok = bool(await conn.fetchval("SELECT true"))
        return db_ok and transport.connected and registry.registered.is_set()

    apps = {
        "health": (health.health_app(ready), settings.http.health_check_server_bindport),
        "metrics": (health.metrics_app(pool.metrics if pool else None), settings.http.metrics_server_bindport),
    }
    if pool is None:
        rest = app_mod.create_app(settings, database=database, feed=feed)
        apps = {"REST": (rest, settings.http.http_server_bindport), **apps}
    servers = {name: workers.server(app, settings, port, name) for name, (app, port) in apps.items()}
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    serving = [
        tasks.create_guarded_task(
            s.serve(sockets=[sockets[name]]), name=f"uvicorn:{name}:{s.config.port}", crashed=crashed
        )
        for name, s in servers.items()
    ]
    heap.settle()  # NB: what this process serves with is built; the listeners start on the next loop turn.
    stopper = asyncio.create_task(stop.wait(), name="stop-signal")
    broken = asyncio.create_task(crashed.wait(), name="essential-task-ended")
    try:
        if pool is not None:
            await pool.start(crashed)
        await asyncio.wait([stopper, broken], return_when=asyncio.FIRST_COMPLETED)
    finally:
        failed = list(crashed.names)
        crashed.closing = True
        if pool is not None:
            await pool.stop()
        for s in servers.values():
            s.should_exit = True
        await asyncio.gather(*serving, return_exceptions=True)
        await tasks.stop([stopper, broken], timeout=1)
    if failed:
        log.error("stopping: essential task(s) ended: %s", ", ".join(failed))
        return 1
    return 0
