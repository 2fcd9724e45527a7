"""The MQTT adapter: one :class:`Broker` wrapping gmqtt, used by the hub and by agents.

What it guarantees, and how:

* **Reconnects are ours.** gmqtt's built-in reconnect retries at a fixed delay, gives up silently on
  non-``OSError`` failures and has no dial timeout, so every connection is a fresh ``gmqtt.Client`` whose
  ``reconnect`` hook only tells the supervisor task that the link is gone. The supervisor reconnects with
  capped, jittered exponential backoff, re-subscribes, and then announces the connection to
  :meth:`Broker.connections` listeners, which is where the hub and the agents hang their resyncs.
* **Persistent sessions.** With ``sessionExpiry > 0`` we connect with clean start off (and, on MQTT 5, that
  session expiry), so QoS 1 messages published while we are away are queued by the broker and delivered on
  reconnect, even across a broker restart when the broker persists its state.
* **Bounded in-flight publishes.** gmqtt's ``publish()`` is synchronous and raises ``OverflowError`` once
  packet ids run out (at the broker's Receive Maximum). :meth:`Broker.publish` waits for a slot in a window
  (:class:`protocol.window.Window`) kept below that maximum; a slot frees when the PUBACK arrives, which gmqtt
  only reports to its ``PersistentStorage``, hence
  :class:`_AckStorage`. Messages not acknowledged when a link drops are re-published on the next link
  (at-least-once: receivers are idempotent by resource version and sequence id).
* **Back-pressure, not drops, on receive.** Received messages go into a bounded inbox read by
  :meth:`Broker.messages`; on MQTT 5 the PUBACK is withheld while the inbox is over its bound, so the broker
  stops sending once its in-flight window to us is full. (MQTT 3.1.1 acknowledges before delivery in gmqtt,
  so there the bound is soft.)

Nothing of gmqtt escapes this module: callers see :class:`MQTTMessage`, :class:`Received`, :class:`Connection`
and the exceptions of :mod:`protocol.errors`.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import itertools
import logging
import socket
from collections.abc import AsyncIterator, Iterable
from types import TracebackType
from typing import Any, Final

import gmqtt
from gmqtt.mqtt.constants import MQTTv50, MQTTv311

from protocol.backoff import Backoff
from protocol.cloudevents_mqtt import MQTTMessage
from protocol.errors import (
    BrokerClosedError,
    BrokerError,
    ConnectError,
    NotConnectedError,
    PayloadTooLargeError,
    ProtocolError,
    PublishTimeoutError,
    SubscribeError,
)
from protocol.mqtt_config import MQTTConfig
from protocol.window import Window

logger = logging.getLogger(__name__)

#: Packet ids are shared by PUBLISH and SUBSCRIBE, and gmqtt refuses the last one: keep this many spare.
RECEIVE_MAXIMUM_MARGIN: Final = 2
DEFAULT_RECEIVE_MAXIMUM: Final = 65535
#: Room left in a PUBLISH for the fixed header, topic and property lengths when checking the broker's limit.
PACKET_OVERHEAD: Final = 64
_V311_PERMANENT: Final = frozenset({1, 2, 4, 5})
_V5_PERMANENT: Final = frozenset({129, 130, 132, 133, 134, 135, 138, 140, 144, 149, 153, 154, 155, 156, 157})
_PUBACK_UNSPECIFIED_ERROR: Final = 0x80


@dataclasses.dataclass(frozen=True, slots=True)
class Received:
    """One message delivered on a subscription."""

    topic: str
    message: MQTTMessage
    qos: int
    retain: bool = False
    dup: bool = False


@dataclasses.dataclass(frozen=True, slots=True)
class Connection:
    """One established and subscribed link; ``generation`` counts successful links (1 = the first)."""

    generation: int
    session_present: bool
    receive_maximum: int
    max_packet_size: int | None


@dataclasses.dataclass(eq=False, slots=True)
class _Pending:
    topic: str
    message: MQTTMessage
    qos: int
    future: asyncio.Future[None]


class _AckStorage(gmqtt.storage.PersistentStorage):  # type: ignore[misc]
    """gmqtt's in-flight store, which is the only place PUBACK (and PUBCOMP) become visible."""

    def __init__(self, link: _Link) -> None:
        super().__init__()
        self._link = link
        self.last_mid: int | None = None

    def push_message(self, mid: int, raw_package: bytes) -> None:
        if mid not in self._messages:  # NB: a QoS 2 PUBREC re-pushes the same mid to swap in the PUBREL.
            self.last_mid = mid
        super().push_message(mid, raw_package)

    def remove_message_by_mid(self, mid: int) -> None:
        super().remove_message_by_mid(mid)
        self._link.acknowledged(mid)


class _Client(gmqtt.Client):  # type: ignore[misc]
    """A gmqtt client whose own reconnect machinery is disabled: a lost link is reported, not repaired."""

    def __init__(self, client_id: str, *, link: _Link, **kwargs: Any) -> None:
        self._link = link
        super().__init__(client_id, **kwargs)

    async def reconnect(self, delay: bool = False) -> None:
        self._link.mark_lost()


class _Link:
    """State of one gmqtt connection: the client, what it has in flight, whether it is gone."""

    def __init__(self, broker: Broker, generation: int) -> None:
        self.broker = broker
        self.generation = generation
        self.lost = asyncio.Event()
        self.pending: dict[int, _Pending] = {}
        self.suback: dict[int, asyncio.Future[tuple[int, ...]]] = {}
        self.session_present = False
        self.connack: dict[str, Any] = {}
        self.storage = _AckStorage(self)
        self.sent = False
        """Whether this loop iteration published on this link already (see :func:`_cork`)."""
        self.corked: Any = None
        """The socket while corked."""
        config = broker.config
        kwargs: dict[str, Any] = {}
        if config.protocol_version == 5 and config.session_expiry > 0:
            kwargs["session_expiry_interval"] = config.session_expiry
        self.client = _Client(
            broker.client_id,
            link=self,
            clean_session=config.session_expiry == 0,
            optimistic_acknowledgement=False,
            persistent_storage=self.storage,
            logger=logging.getLogger(f"{__name__}.gmqtt"),
            **kwargs,
        )
        if config.username:
            self.client.set_auth_credentials(config.username, config.password)
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.on_subscribe = self._on_subscribe

    # --- gmqtt callbacks (never exposed)
    # ---------------------------------------------------------------------

    def _on_connect(self, client: Any, flags: int, rc: int, properties: dict[str, Any]) -> None:
        self.session_present = bool(flags)
        self.connack = properties

    async def _on_message(self, client: Any, topic: str, payload: bytes, qos: int, properties: dict[str, Any]) -> int:
        return await self.broker._deliver(topic, payload, qos, properties)

    def _on_subscribe(self, client: Any, mid: int, granted: tuple[int, ...], properties: Any) -> None:
        future = self.suback.pop(mid, None)
        if future is not None and not future.done():
            future.set_result(tuple(granted))

    # --- bookkeeping
    # -----------------------------------------------------------------------------------------

    def mark_lost(self) -> None:
        if not self.lost.is_set():
            self.lost.set()
            if self.broker._link is self:
                # NB: synchronously, so no publisher sees "ready" on a dead link before the supervisor runs.
                self.broker._ready.clear()
            for future in self.suback.values():
                if not future.done():
                    future.set_exception(ConnectError("connection lost while subscribing"))
            self.suback.clear()

    def acknowledged(self, mid: int) -> None:
        entry = self.pending.pop(mid, None)
        if entry is None:
            return
        self.broker._window.release()
        if not entry.future.done():
            entry.future.set_result(None)

    @property
    def receive_maximum(self) -> int:
        return _first(self.connack.get("receive_maximum"), DEFAULT_RECEIVE_MAXIMUM)

    @property
    def max_packet_size(self) -> int | None:
        value = _first(self.connack.get("maximum_packet_size"), 0)
        return value or None


def _first(value: object, default: int) -> int:
    """CONNACK properties arrive as lists of values (gmqtt's parser), connect properties as scalars."""
    if isinstance(value, list | tuple):
        value = value[0] if value else default
    return value if isinstance(value, int) and not isinstance(value, bool) else default


RECONNECT = Backoff(min=1.0, max=60.0)
"""Delays between attempts to (re)connect, unless a broker is given others."""


class Broker:
    """An MQTT connection that stays up: use as ``async with Broker(config, client_id=...) as broker:``.

    ``subscriptions`` are (re)subscribed on every link at the config's ``subQoS``; :meth:`subscribe` adds
    more.
    """

    def __init__(
        self,
        config: MQTTConfig,
        *,
        client_id: str,
        subscriptions: Iterable[str] = (),
        inbox_size: int = 100,
        publish_timeout: float | None = None,
        first_connect_timeout: float | None = None,
        reconnect: Backoff = RECONNECT,
        max_message_size: int | None = None,
    ) -> None:
        self.config = config
        self.client_id = client_id
        self._filters: list[str] = list(dict.fromkeys(subscriptions))
        self._inbox_size = max(1, inbox_size)
        self._publish_timeout = publish_timeout if publish_timeout is not None else config.dial_timeout
        self._first_connect_timeout = first_connect_timeout or config.dial_timeout
        self._backoff = reconnect
        self._max_message_size = max_message_size
        self._ssl = config.ssl_context()
        self._window = Window(config.max_inflight)
        self._inbox: collections.deque[Received] = collections.deque()
        self._inbox_ready = asyncio.Event()
        self._inbox_room = asyncio.Event()
        self._replay: collections.deque[_Pending] = collections.deque()
        self._link: _Link | None = None
        self._ready = asyncio.Event()
        self._closed = False
        self._closing = asyncio.Event()
        self._listeners: set[asyncio.Queue[Connection | None]] = set()
        self._current: Connection | None = None
        self._generations = itertools.count(1)
        self._attempts = itertools.count(1)
        self._first: asyncio.Future[Connection] | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self._last_error: Exception | None = None

    # --- lifecycle
    # -------------------------------------------------------------------------------------------

    async def __aenter__(self) -> Broker:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def start(self) -> Connection:
        """Connect and subscribe; raise :class:`ConnectError` (or :class:`SubscribeError`) if that fails."""
        if self._supervisor is not None:
            raise BrokerError("broker already started")
        first: asyncio.Future[Connection] = asyncio.get_running_loop().create_future()
        self._first = first
        supervisor = self._supervisor = asyncio.create_task(self._supervise(), name=f"mqtt-supervisor:{self.client_id}")
        try:
            async with asyncio.timeout(self._first_connect_timeout):
                # NB: the supervisor too, so that a crash of it is reported now rather than as a timeout later.
                waiters: set[asyncio.Future[Any]] = {first, supervisor}
                await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
            if first.done():
                return first.result()
            supervisor.result()
            raise BrokerError("the MQTT supervisor ended before the first connection")
        except TimeoutError:
            last = self._last_error
            await self.close()
            reason = f" (last error: {last!r})" if last is not None else ""
            raise ConnectError(
                f"could not connect to {self.config.host}:{self.config.port} within {self._first_connect_timeout}s"
                f"{reason}"
            ) from last
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        """Disconnect (the broker keeps a persistent session), stop all tasks, end the iterators."""
        if self._closed:
            return
        self._closed = True
        self._closing.set()
        if self._supervisor is not None:
            if not self._supervisor.done():
                try:
                    async with asyncio.timeout(10):
                        await asyncio.shield(self._supervisor)
                except TimeoutError:
                    self._supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._supervisor
        leftovers = list(self._replay) + (list(self._link.pending.values()) if self._link is not None else [])
        for entry in leftovers:
            entry.future.cancel()
        self._replay.clear()
        if self._first is not None and not self._first.done():
            self._first.set_exception(BrokerClosedError("broker closed before connecting"))
            self._first.exception()  # NB: retrieved here so asyncio does not log it as never retrieved.
        # NB: wake everyone still waiting to publish; they see ``_closed`` and raise BrokerClosedError.
        self._ready.set()
        self._window.set_limit(1 << 30)
        self._inbox_ready.set()
        self._inbox_room.set()
        for queue in self._listeners:
            queue.put_nowait(None)

    # --- public API
    # ------------------------------------------------------------------------------------------

    @property
    def is_connected(self) -> bool:
        return self._ready.is_set() and not self._closed

    @property
    def connection(self) -> Connection | None:
        """The current link, or ``None`` while disconnected."""
        return self._current if self.is_connected else None

    @property
    def binary_mode(self) -> bool:
        """Whether to encode CloudEvents in binary mode (MQTT 5) rather than structured (MQTT 3.1.1)."""
        return self.config.binary_mode

    @property
    def in_flight(self) -> int:
        """QoS 1/2 publishes sent or waiting to be re-sent, not yet acknowledged."""
        link = self._link
        return len(self._replay) + (len(link.pending) if link is not None else 0)

    async def wait_connected(self, *, timeout: float | None = None) -> Connection:
        if self._closed:
            raise BrokerClosedError("broker is closed")
        try:
            async with asyncio.timeout(timeout):
                await self._ready.wait()
        except TimeoutError:
            raise NotConnectedError(f"not connected after {timeout}s") from None
        if self._closed or self._current is None:
            raise BrokerClosedError("broker is closed")
        return self._current

    async def subscribe(self, topic_filter: str) -> None:
        """Add a subscription, effective now if connected and on every later link."""
        if topic_filter in self._filters:
            return
        self._filters.append(topic_filter)
        link = self._link
        if link is not None and self._ready.is_set() and not link.lost.is_set():
            await self._subscribe(link, [topic_filter])

    async def publish(
        self, topic: str, message: MQTTMessage, *, qos: int | None = None, timeout: float | None = None
    ) -> asyncio.Future[None]:
        """Hand ``message`` to the broker; returns a future resolved on PUBACK (already done for QoS 0).

        Waits while disconnected or while the in-flight window is full; raises :class:`NotConnectedError` or
        :class:`PublishTimeoutError` after ``timeout`` (default: the config's ``dialTimeout``), and
        :class:`PayloadTooLargeError` if the broker could not accept the message. The returned future may be
        ignored; it is cancelled if the adapter closes first.
        """
        if self._closed:
            raise BrokerClosedError("broker is closed")
        qos = self.config.pub_qos if qos is None else qos
        if qos not in (0, 1, 2):
            raise ValueError(f"invalid QoS {qos}")
        if message.user_properties and not self.binary_mode:
            raise ProtocolError("user properties (binary mode) need MQTT 5; encode with binary=False")
        link = self._link
        if self._ready.is_set() and link is not None and not link.lost.is_set():
            # NB: connected with a free slot (the usual case): send now, without arming a timeout per message.
            self._check_size(topic, message, link)
            if qos == 0 or self._window.try_acquire():
                return self._dispatch(link, topic, message, qos)
        limit = timeout if timeout is not None else self._publish_timeout
        try:
            async with asyncio.timeout(limit):
                while True:
                    await self._ready.wait()
                    if self._closed:
                        raise BrokerClosedError("broker is closed")
                    link = self._link
                    assert link is not None
                    self._check_size(topic, message, link)
                    if qos == 0:
                        return self._dispatch(link, topic, message, 0)
                    await self._window.acquire()
                    if self._closed:
                        self._window.release()
                        raise BrokerClosedError("broker is closed")
                    if link is not self._link or link.lost.is_set() or not self._ready.is_set():
                        self._window.release()
                        await asyncio.sleep(0)  # NB: never spin without yielding to the supervisor.
                        continue
                    return self._dispatch(link, topic, message, qos)
        except TimeoutError:
            if not self._ready.is_set():
                raise NotConnectedError(f"not connected to the broker for {limit}s") from None
            raise PublishTimeoutError(f"in-flight window stayed full for {limit}s") from None

    def _dispatch(self, link: _Link, topic: str, message: MQTTMessage, qos: int) -> asyncio.Future[None]:
        """Send on ``link`` (for QoS 1/2 the caller holds a window slot); the future resolves on PUBACK."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if qos == 0:
            self._send_raw(link, topic, message, 0)
            future.set_result(None)
        else:
            self._send(link, _Pending(topic=topic, message=message, qos=qos, future=future))
        return future

    async def drain(self, *, timeout: float | None = None) -> None:
        """Wait until every QoS 1/2 publish so far is acknowledged."""
        futures = [e.future for e in self._replay]
        if self._link is not None:
            futures += [e.future for e in self._link.pending.values()]
        if not futures:
            return
        try:
            async with asyncio.timeout(timeout):
                await asyncio.gather(*(asyncio.shield(f) for f in futures))
        except TimeoutError:
            raise PublishTimeoutError(f"{self.in_flight} publishes unacknowledged after {timeout}s") from None

    async def messages(self) -> AsyncIterator[Received]:
        """Received messages in arrival order; ends once the adapter is closed and the inbox is empty."""
        while True:
            while not self._inbox:
                if self._closed:
                    return
                self._inbox_ready.clear()
                await self._inbox_ready.wait()
            item = self._inbox.popleft()
            if len(self._inbox) <= self._inbox_size:
                self._inbox_room.set()
            yield item

    async def connections(self) -> AsyncIterator[Connection]:
        """The current link (if any), then every new link once it is subscribed: resync on each one."""
        queue: asyncio.Queue[Connection | None] = asyncio.Queue()
        if self._closed:
            return
        self._listeners.add(queue)
        try:
            if self._ready.is_set() and self._current is not None:
                yield self._current
            while (item := await queue.get()) is not None:
                yield item
        finally:
            self._listeners.discard(queue)

    # --- internals
    # -------------------------------------------------------------------------------------------

    def _check_size(self, topic: str, message: MQTTMessage, link: _Link) -> None:
        limits = [x for x in (self._max_message_size, link.max_packet_size) if x]
        if not limits:
            return
        size = len(message.payload) + len(topic.encode("utf-8")) + PACKET_OVERHEAD
        if message.content_type:
            size += len(message.content_type.encode("utf-8")) + 3
        size += sum(len(k.encode("utf-8")) + len(v.encode("utf-8")) + 5 for k, v in message.user_properties)
        if size > min(limits):
            raise PayloadTooLargeError(size, min(limits))

    def _properties(self, message: MQTTMessage) -> dict[str, Any]:
        if not self.binary_mode:
            return {}
        properties: dict[str, Any] = {}
        if message.content_type:
            properties["content_type"] = message.content_type
        if message.user_properties:
            properties["user_property"] = list(message.user_properties)
        return properties

    def _send_raw(self, link: _Link, topic: str, message: MQTTMessage, qos: int) -> None:
        _cork(link)
        link.client.publish(topic, message.payload, qos=qos, **self._properties(message))

    def _send(self, link: _Link, entry: _Pending) -> None:
        """Publish a windowed message on ``link``; the caller holds a window slot for it."""
        link.storage.last_mid = None
        try:
            self._send_raw(link, entry.topic, entry.message, entry.qos)
        except Exception as exc:  # NB: gmqtt raises whatever its transport does; treat the link as broken.
            logger.warning("publish on %s failed, will retry on the next link: %r", self.client_id, exc)
            self._window.release()
            self._replay.append(entry)
            link.mark_lost()
            return
        mid = link.storage.last_mid
        if mid is None:  # pragma: no cover - gmqtt always stores QoS>0 publishes
            self._window.release()
            entry.future.set_result(None)
            return
        link.pending[mid] = entry

    async def _deliver(self, topic: str, payload: bytes, qos: int, properties: dict[str, Any]) -> int:
        content_type = properties.get("content_type")
        if isinstance(content_type, list):
            content_type = content_type[0] if content_type else None
        user_properties = tuple((str(k), str(v)) for k, v in properties.get("user_property", ()) if isinstance(k, str))
        self._inbox.append(
            Received(
                topic=topic,
                message=MQTTMessage(payload=bytes(payload), content_type=content_type, user_properties=user_properties),
                qos=qos,
                retain=bool(properties.get("retain")),
                dup=bool(properties.get("dup")),
            )
        )
        self._inbox_ready.set()
        # NB: holding the PUBACK back is the back-pressure: the broker stops at its in-flight window.
        while len(self._inbox) > self._inbox_size and not self._closed:
            self._inbox_room.clear()
            await self._inbox_room.wait()
        return _PUBACK_UNSPECIFIED_ERROR if self._closed else 0

    async def _supervise(self) -> None:
        attempt = 0
        while not self._closed:
            link = _Link(self, next(self._attempts))
            self._link = link
            try:
                connection = await self._establish(link)
            except Exception as exc:
                # NB: whatever failed, the link is torn down and tried again: only a refusal before the first link
                # ends the supervisor. Anything but our own errors is unexpected, so it is logged with its traceback.
                await self._teardown(link)
                fatal = isinstance(exc, SubscribeError) or (isinstance(exc, ConnectError) and exc.permanent)
                if fatal and self._first is not None and not self._first.done():
                    # NB: before the first link a refusal is a configuration error: report it, don't retry.
                    self._first.set_exception(exc)
                    return
                if self._closed:
                    return
                self._last_error = exc
                attempt += 1
                delay = self._backoff.delay(attempt)
                logger.warning(
                    "MQTT %s: %s; retrying in %.1fs (attempt %d)",
                    self.client_id,
                    exc if isinstance(exc, BrokerError) else repr(exc),
                    delay,
                    attempt,
                    exc_info=not isinstance(exc, BrokerError),
                )
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(delay):
                        await self._closing.wait()
                continue
            if link.lost.is_set():
                await self._teardown(link)
                continue
            attempt = 0
            self._last_error = None
            self._current = connection
            self._ready.set()
            logger.info(
                "MQTT %s connected (link %d, session present: %s)",
                self.client_id,
                connection.generation,
                connection.session_present,
            )
            if self._first is not None and not self._first.done():
                self._first.set_result(connection)
            for queue in self._listeners:
                queue.put_nowait(connection)
            closing = asyncio.ensure_future(self._closing.wait())
            lost = asyncio.ensure_future(link.lost.wait())
            try:
                await asyncio.wait({closing, lost}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                closing.cancel()
                lost.cancel()
            self._ready.clear()
            if not self._closed:
                logger.warning("MQTT %s lost its connection (link %d)", self.client_id, link.generation)
            await self._teardown(link)

    async def _establish(self, link: _Link) -> Connection:
        config = self.config
        version = MQTTv50 if config.protocol_version == 5 else MQTTv311
        await self._race(
            link,
            link.client.connect(
                config.host, config.port, ssl=self._ssl or False, keepalive=config.keep_alive, version=version
            ),
            what="connect",
        )
        if link.lost.is_set():
            raise ConnectError("connection lost right after CONNACK")
        self._window.set_limit(min(config.max_inflight, link.receive_maximum - RECEIVE_MAXIMUM_MARGIN))
        if self._filters:
            await self._subscribe(link, list(self._filters))
        await self._replay_pending(link)
        return Connection(
            generation=next(self._generations),
            session_present=link.session_present,
            receive_maximum=link.receive_maximum,
            max_packet_size=link.max_packet_size,
        )

    async def _subscribe(self, link: _Link, filters: list[str]) -> None:
        qos = self.config.sub_qos
        future: asyncio.Future[tuple[int, ...]] = asyncio.get_running_loop().create_future()
        mid = link.client.subscribe([gmqtt.Subscription(f, qos=qos) for f in filters])
        link.suback[mid] = future
        granted = await self._race(link, future, what="subscribe")
        refused = [f for f, code in zip(filters, granted, strict=False) if code >= 0x80]
        if refused or len(granted) < len(filters):
            raise SubscribeError(f"broker refused subscriptions {refused or filters} (codes {granted})")

    async def _replay_pending(self, link: _Link) -> None:
        """Re-publish what the previous links left unacknowledged, in the original order."""
        while self._replay:
            await self._race(link, self._window.acquire(), what="replay")
            entry = self._replay.popleft()
            if entry.future.done():
                self._window.release()
                continue
            self._send(link, entry)

    async def _race(self, link: _Link, awaitable: Any, *, what: str) -> Any:
        """Await ``awaitable`` unless the link drops or ``dialTimeout`` passes; map gmqtt errors to ours."""
        task = asyncio.ensure_future(awaitable)
        lost = asyncio.ensure_future(link.lost.wait())
        closing = asyncio.ensure_future(self._closing.wait())
        try:
            done, _ = await asyncio.wait(
                {task, lost, closing}, timeout=self.config.dial_timeout, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            lost.cancel()
            closing.cancel()
            if not task.done():
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task
        if task not in done:
            if self._closed:
                raise ConnectError(f"adapter closed during {what}")
            if link.lost.is_set():
                raise ConnectError(f"connection lost during {what}")
            raise ConnectError(f"{what} timed out after {self.config.dial_timeout}s")
        try:
            return task.result()
        except (ConnectError, SubscribeError):
            raise
        except gmqtt.MQTTConnectError as exc:
            code = getattr(exc, "_code", None)
            permanent = code in (_V5_PERMANENT if self.config.protocol_version == 5 else _V311_PERMANENT)
            raise ConnectError(f"broker refused the connection: {exc}", permanent=permanent) from exc
        except (OSError, EOFError, asyncio.IncompleteReadError) as exc:
            raise ConnectError(f"cannot reach {self.config.host}:{self.config.port}: {exc!r}") from exc

    async def _teardown(self, link: _Link) -> None:
        """Close a link and move what it had in flight to the replay queue."""
        link.mark_lost()
        # NB: what this link had in flight is older than anything still queued for replay (new publishes wait
        # until the replay is done), so it goes first.
        for entry in reversed(link.pending.values()):
            self._window.release()
            self._replay.appendleft(entry)
        link.pending.clear()
        with contextlib.suppress(Exception, TimeoutError):
            async with asyncio.timeout(5):
                await link.client.disconnect()


_TCP_CORK: Final[int | None] = getattr(socket, "TCP_CORK", None)


def _cork(link: _Link) -> None:
    """Hold the second and later publishes of this event loop iteration in the kernel; send them together after it.

    Each publish is a ``send`` of its own; on loopback every send also runs the broker's receive path, which
    made the sends most of a dispatch round's CPU. Corking the socket (Linux ``TCP_CORK``) until the loop's
    next iteration sends a batch's publishes as one train of full segments instead: the same bytes, in the
    same order, later by at most one loop iteration. The first publish of an iteration goes out at once, uncorked:
    a lone publish would only pay two ``setsockopt`` calls for nothing. A no-op where the option or the socket is
    not available.
    """
    if link.corked is not None or _TCP_CORK is None:
        return
    if not link.sent:
        link.sent = True
        asyncio.get_running_loop().call_soon(_uncork, link)
        return
    transport = getattr(getattr(link.client, "_connection", None), "_transport", None)
    sock = transport.get_extra_info("socket") if transport is not None else None
    if sock is None:
        return
    try:
        sock.setsockopt(socket.IPPROTO_TCP, _TCP_CORK, 1)
    except OSError:
        return
    link.corked = sock


def _uncork(link: _Link) -> None:
    """The end of the loop iteration that published on ``link``: send what it corked."""
    sock, link.corked, link.sent = link.corked, None, False
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, _TCP_CORK, 0)
