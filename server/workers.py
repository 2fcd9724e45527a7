"""``--http-workers N``: the REST port served by N processes (pre-fork), the hub's other work in the first.

The hub process binds the REST socket as always (:func:`server.listeners.bind`), starts listening on it, and
spawns N worker processes (``python -m server.workers``) that inherit it; the kernel hands each new connection to
one of them. A worker runs only the REST app: its own database pool (a share of ``--db-max-open-connections``,
:func:`pool_sizes`) and its own LISTEN connection and :class:`~server.services.watch.StatusFeed` for REST watches.
The hub process keeps everything else: the dispatcher and transport, gRPC, health, metrics, maintenance.

The two talk over the worker's stdin and stdout. The hub writes the settings (the database URL included, so it
is never on a command line) as one JSON line on stdin and then keeps stdin open: its end (the hub died, even by
SIGKILL) stops the worker. The worker writes ``serving`` on stdout once it accepts connections, and answers each
``metrics`` line with its REST request metrics (:mod:`server.worker_metrics`: the hub's ``/metrics`` sums them).

Lifecycle: workers run in their own process group and ignore SIGINT, so a signal meant for the hub (Ctrl-C, a
``kill`` of its group) reaches them only through the hub, which stops them (SIGTERM, then SIGKILL after the
graceful timeout) when it stops. A worker that ends while the hub is not stopping is a crash: the hub logs it
(pid and exit status), turns unready and exits 1, as for any of its essential tasks. The hub does not restart
workers: the process supervisor (Kubernetes, systemd) restarts the hub, and a hub that is half gone is not left
serving.

Access log lines of a worker end with ``worker=I pid=P``. Only the hub process serves ``/metrics``; on each
scrape it asks the workers for their REST request metrics and serves them summed with its own.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
import os
import signal
import socket
import sys
from collections.abc import Iterator
from typing import Any, Final

import uvicorn
from starlette.applications import Starlette

from server import app as app_mod
from server import dsn, eventloop, heap, listeners, logging_setup, tasks, worker_metrics
from server.dispatch import listen
from server.services import watch
from server.settings import Settings
from server.store import db as store_db
from server.store import logs

log = logging.getLogger(__name__)

SERVING = b"serving\n"
ASK_METRICS = b"metrics\n"
METRICS = b"metrics "
METRICS_TIMEOUT: Final = 1.0
"""Seconds a scrape of ``/metrics`` waits for the workers' REST request metrics."""
BACKLOG = 2048


def pool_sizes(total: int, workers: int) -> tuple[int, int]:
    """(hub process, each worker): ``total`` split about evenly, at least 2 each (the hub's at least what is left)."""
    if workers <= 1:
        return total, 0
    each = max(2, total // (workers + 1))
    return max(2, total - workers * each), each


class Server(uvicorn.Server):
    """A uvicorn server that leaves signals to us (several run in one process and stop together), says once, by
    name, where it serves (its own log records name the listener: :data:`logging_setup.LISTENER`), and ticks once a
    second rather than ten times (its tick refreshes the ``Date`` header; a hub at rest should not wake for
    nothing), stopping as soon as it is told. ``serving`` is set once it accepts connections."""

    def __init__(self, config: uvicorn.Config, name: str) -> None:
        self._exit = asyncio.Event()
        self.serving = asyncio.Event()
        super().__init__(config)
        self.name = name

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

    async def serve(self, sockets: list[socket.socket] | None = None) -> None:
        logging_setup.LISTENER.set(self.name)  # NB: this task's own context (asyncio copies one per task).
        await super().serve(sockets)

    async def main_loop(self) -> None:
        counter = 0
        while not await self.on_tick(counter):
            counter = (counter + 10) % 864000  # NB: uvicorn does its once-a-second work when counter % 10 == 0
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(1.0):
                    await self._exit.wait()

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started:
            host, port = sockets[0].getsockname()[:2] if sockets else (self.config.host, self.config.port)
            shown = f"[{host}]" if ":" in host else host
            log.info("%s listening on http://%s:%d (uvicorn)", self.name, shown, port)
            self.serving.set()


def server(app: Starlette, settings: Settings, port: int, name: str) -> Server:
    config = uvicorn.Config(
        app,
        host=settings.http.server_hostname,
        port=port,
        http=listeners.http_protocol(settings.http.http_read_timeout),
        log_config=None,
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=10,
        backlog=BACKLOG,
    )
    return Server(config, name)


# The hub's side.


class Workers:
    """The REST worker processes of this hub: spawned on ``sock``, watched, stopped."""

    def __init__(self, settings: Settings, url: str, sock: socket.socket, pool_size: int) -> None:
        self.settings = settings
        self.url = url
        self.sock = sock
        self.pool_size = pool_size
        self.procs: dict[int, asyncio.subprocess.Process] = {}
        self.serving: set[int] = set()
        self.closing = False
        self._watchers: list[asyncio.Task[None]] = []
        self._asked: dict[int, collections.deque[asyncio.Future[worker_metrics.Snapshot]]] = {}
        self._snapshots: dict[int, worker_metrics.Snapshot] = {}

    @property
    def ready(self) -> bool:
        """Every worker accepts connections and none has ended."""
        return len(self.serving) == self.settings.http.http_workers and all(
            p.returncode is None for p in self.procs.values()
        )

    async def start(self, crashed: tasks.Crashed) -> None:
        """Spawn the workers; each is watched by an essential task whose end (the worker's) stops the hub."""
        self.sock.listen(BACKLOG)  # NB: queue connections from now on, before any worker accepts them.
        config = self.settings.replace(db_url=self.url, db_max_open_connections=self.pool_size).to_json()
        for index in range(1, self.settings.http.http_workers + 1):
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "server.workers",
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                pass_fds=(self.sock.fileno(),),
                start_new_session=True,  # NB: its own process group (uvloop has no process_group=)
            )
            assert proc.stdin is not None
            hello = {"index": index, "fd": self.sock.fileno(), "settings": config}
            proc.stdin.write(json.dumps(hello).encode() + b"\n")
            await proc.stdin.drain()
            self.procs[index] = proc
            name = f"rest-worker-{index}"
            self._watchers.append(tasks.create_guarded_task(self._watch(index, proc), name=name, crashed=crashed))

    async def _watch(self, index: int, proc: asyncio.subprocess.Process) -> None:
        assert proc.stdout is not None
        while line := await proc.stdout.readline():
            if line == SERVING:
                self.serving.add(index)
            elif line.startswith(METRICS):
                self._answered(index, json.loads(line[len(METRICS) :]))
        code = await proc.wait()
        if self.closing:
            return
        how = f"was killed by signal {-code}" if code < 0 else f"exited with status {code}"
        log.error("REST worker %d (pid %d) %s; the hub stops", index, proc.pid, how)

    async def metrics(self) -> list[worker_metrics.Snapshot]:
        """Every worker's REST request metrics (:mod:`server.worker_metrics`), asked for now; a worker that does not
        answer within :data:`METRICS_TIMEOUT` counts with its last answer (nothing before its first)."""
        asked: list[asyncio.Future[worker_metrics.Snapshot]] = []
        for index, proc in self.procs.items():
            if proc.returncode is not None or proc.stdin is None or proc.stdin.is_closing():
                continue
            try:
                proc.stdin.write(ASK_METRICS)
            except ConnectionError:  # NB: it has just ended; its watcher reports that
                continue
            answer = asyncio.get_running_loop().create_future()
            self._asked.setdefault(index, collections.deque()).append(answer)
            asked.append(answer)
        if asked:
            await asyncio.wait(asked, timeout=METRICS_TIMEOUT)
        return list(self._snapshots.values())

    def _answered(self, index: int, snapshot: worker_metrics.Snapshot) -> None:
        self._snapshots[index] = snapshot
        waiting = self._asked.get(index)
        if waiting:
            answer = waiting.popleft()
            if not answer.done():
                answer.set_result(snapshot)

    async def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM every worker, wait at most ``timeout`` for them to finish their requests, then SIGKILL."""
        self.closing = True
        alive = [p for p in self.procs.values() if p.returncode is None]
        for proc in alive:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
        waits = [asyncio.ensure_future(p.wait()) for p in alive]
        if waits:
            _, stuck = await asyncio.wait(waits, timeout=timeout)
            for proc in alive:
                if proc.returncode is None:
                    log.warning("REST worker (pid %d) did not stop within %gs: killed", proc.pid, timeout)
                    with contextlib.suppress(ProcessLookupError):
                        proc.kill()
            if stuck:
                await asyncio.wait(stuck)
        await tasks.stop(self._watchers, timeout=1)


# The worker's side.


class _NameWorker(logging.Filter):
    """Access log lines end with ``worker=I pid=P``."""

    def __init__(self, index: int) -> None:
        super().__init__()
        self.suffix = f" worker={index} pid={os.getpid()}"

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = f"{record.msg}{self.suffix}"
        return True


async def _parent_gone() -> None:
    """Answer the hub's requests on stdin; return when the hub closes it (it stopped, or died)."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while line := await reader.readline():
        if line == ASK_METRICS:
            answer = json.dumps(worker_metrics.snapshot(), separators=(",", ":")).encode()
            sys.stdout.buffer.write(METRICS + answer + b"\n")
            sys.stdout.buffer.flush()


async def _serve(settings: Settings, index: int, sock: socket.socket) -> int:
    assert settings.database.db_url is not None
    database = store_db.database(settings.database.db_url, max_size=settings.database.db_max_open_connections)
    await database.connect()
    crashed = tasks.Crashed()
    feed = watch.StatusFeed(poll_interval=settings.dispatch.dispatch_poll_interval)
    status_listen = listen.listen(
        dsn.plain(settings.database.db_url), logs.STATUS_CHANNEL, feed.wake, settings.database
    )
    background = [
        tasks.create_guarded_task(feed.run(), name="status-feed", crashed=crashed),
        tasks.create_guarded_task(status_listen, name="status-listen", crashed=crashed),
    ]
    try:
        app = app_mod.create_app(settings, database=database, feed=feed)
        rest = server(app, settings, settings.http.http_server_bindport, f"REST worker {index}")
        heap.settle()
        serving = tasks.create_guarded_task(rest.serve(sockets=[sock]), name="uvicorn:REST", crashed=crashed)
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        hub_gone = asyncio.create_task(_parent_gone(), name="hub-gone")
        ends = [asyncio.create_task(stop.wait()), asyncio.create_task(crashed.wait()), hub_gone]
        started = asyncio.create_task(rest.serving.wait())
        await asyncio.wait([*ends, started], return_when=asyncio.FIRST_COMPLETED)
        if started.done():
            sys.stdout.buffer.write(SERVING)
            sys.stdout.buffer.flush()
            await asyncio.wait(ends, return_when=asyncio.FIRST_COMPLETED)
        if hub_gone.done():
            log.warning("REST worker %d: the hub is gone; stopping", index)
        failed = list(crashed.names)
        crashed.closing = True
        rest.should_exit = True
        await asyncio.gather(serving, return_exceptions=True)
        await tasks.stop([*ends, started], timeout=1)
        if failed:
            log.error("REST worker %d stopping: essential task(s) ended: %s", index, ", ".join(failed))
            return 1
        return 0
    finally:
        await tasks.stop(background, timeout=10)
        await database.disconnect()


def main() -> int:
    """A REST worker: its settings, index and listening socket come from the hub on stdin (see the module text)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # NB: the hub stops us; Ctrl-C is for the hub.
    hello: dict[str, Any] = json.loads(sys.stdin.buffer.readline() or b"null") or {}
    if not hello:
        print("maestro REST worker: run by `maestro server --http-workers N`, not by hand", file=sys.stderr)
        return 2
    settings = Settings.from_json(hello["settings"])
    index = int(hello["index"])
    logging_setup.configure(
        settings.logging.log_level, settings.logging.log_format, replica=settings.transport.client_id
    )
    logging.getLogger("server.http.access").addFilter(_NameWorker(index))
    sock = socket.socket(fileno=int(hello["fd"]))
    try:
        return eventloop.run(_serve(settings, index, sock))
    except Exception as exc:
        log.error("REST worker %d failed: %s", index, exc, exc_info=exc)
        return 1


if __name__ == "__main__":
    from server import workers  # NB: the module by its name (log records say server.workers, not __main__)

    sys.exit(workers.main())
