"""A paho-mqtt 2.x client driven by the process's asyncio loop (no paho thread).

Why not ``loop_start()``
------------------------
With paho's own network thread every ``publish()`` from another thread appends the
packet and wakes the thread through a socket pair; the thread then writes it. That is
a syscall and a GIL hand-over per message and caps a Python publisher well below what
the socket can take. Driven from our loop instead (paho's "external event loop" mode),
``publish()`` writes the packet straight to the socket, the loop's reader callback
feeds incoming packets (CONNACK, PUBACK, messages) to ``loop_read`` and a 1 s timer
calls ``loop_misc`` for keep-alive. When the socket buffer is full, paho keeps the rest
and we register a writer callback until ``want_write()`` is false.

Blocking steps
--------------
``connect()`` resolves, connects TCP and, with TLS, does the handshake: blocking work,
so it runs in the default executor; the socket-open callback therefore hops back to
the loop thread before touching the selector.

MQTT facts that matter here
---------------------------
- Packet ids are 16 bits: at most 65,535 QoS 1/2 messages can await an ack, and paho
  queues any excess itself. The sink caps its outstanding messages below paho's
  ``max_inflight_messages`` so paho never queues, and keeps unacked messages so a
  connection loss re-sends them on the next connection (at least once, as QoS 1 says).
- A retained status topic with a last will ("offline") tells subscribers when this
  process is gone, even when it dies without saying so.

- MQTT 5 first: the link speaks MQTT 5 (Mosquitto 2 does) and falls back to 3.1.1
  when the broker refuses the protocol version. ``protocol`` in the broker config pins
  one.
- A persistent session (``clean_start=False`` with a session expiry, used by MQTT in)
  makes the broker keep the subscriptions and queue QoS 1/2 messages while the client
  is away, so a setpoint published during a reconnect is delivered when it returns.
  It needs a stable client id (ours is ``petra-<instance>-<name>`` unless configured).
  Retained messages are sent by the broker on every SUBSCRIBE, and we subscribe on
  every connect, so a reconnect reads each retained topic again.

Secrets (password files, env variables) are read here and never logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import ssl
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from petra.config._drivers import BrokerConfig
from petra.errors import ConfigError
from petra.io._process import describe
from petra.io._tasks import cancel_and_wait

log = logging.getLogger("petra.mqtt")
MISC_PERIOD_S = 1.0


def read_password(broker: BrokerConfig) -> str | None:
    """The broker password from ``password_file`` or ``password_env`` (never logged)."""
    if broker.password_file:
        try:
            return Path(broker.password_file).read_text(encoding="utf-8").rstrip("\r\n")
        except OSError as exc:
            raise ConfigError(f"cannot read password_file: {exc.strerror}",
                              key_path="broker.password_file") from None
    if broker.password_env:
        value = os.environ.get(broker.password_env)
        if value is None:
            raise ConfigError(f"environment variable {broker.password_env} is not set",
                              key_path="broker.password_env")
        return value
    return None


class MqttLink:
    """One connection to a broker, run by the current asyncio loop.

    ``on_message(client, userdata, msg)`` and ``on_publish(mid)`` run on the loop
    thread. ``lost`` is set when the connection goes away.

    No handler can fail into paho: an exception from ``on_message`` is caught, given
    to ``on_error`` (the owner counts and logs it) and the next packet is read; an
    exception from paho's own packet handling ends the connection (``lost``), so a
    packet paho cannot digest is never re-read in a loop."""

    def __init__(self, broker: BrokerConfig, client_id: str, *,
                 will: tuple[str, bytes, int, bool] | None = None, max_inflight: int = 1000,
                 on_message: Callable[[Any, Any, Any], None] | None = None,
                 on_publish: Callable[[int], None] | None = None,
                 on_error: Callable[[BaseException], None] | None = None,
                 clean_start: bool = True, session_expiry_s: int = 0) -> None:
        self.broker = broker
        self.clean_start = clean_start
        self.session_expiry_s = session_expiry_s
        self._args = (client_id, will, max_inflight, on_message, on_publish)
        self.loop = asyncio.get_running_loop()
        self.lost = asyncio.Event()
        self._connack: asyncio.Future[Any] = self.loop.create_future()
        self._sock: Any = None
        self._writer_on = False
        self._misc: asyncio.Task[None] | None = None
        self._loop_thread = threading.get_ident()
        self._topic_handlers: list[tuple[str, Callable[[Any, Any, Any], None]]] = []
        self._on_error = on_error
        self.protocol = 311 if broker.protocol == "3.1.1" else 5
        self.client: mqtt.Client = self._make_client()

    def _make_client(self) -> mqtt.Client:
        client_id, will, max_inflight, on_message, on_publish = self._args
        broker = self.broker
        if self.protocol == 5:
            c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id,
                            protocol=mqtt.MQTTv5)
        else:
            c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id,
                            protocol=mqtt.MQTTv311, clean_session=self.clean_start)
        if broker.username:
            c.username_pw_set(broker.username, read_password(broker))
        if broker.tls is not None:
            t = broker.tls
            c.tls_set(ca_certs=t.ca_file, certfile=t.cert_file, keyfile=t.key_file,
                      cert_reqs=ssl.CERT_REQUIRED, tls_version=ssl.PROTOCOL_TLS_CLIENT)
            if t.insecure:
                c.tls_insecure_set(True)
        if will is not None:
            c.will_set(will[0], will[1], qos=will[2], retain=will[3])
        c.max_inflight_messages_set(max_inflight)
        c.max_queued_messages_set(0)
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_socket_open = self._on_socket_open
        c.on_socket_close = self._on_socket_close
        if on_message is not None:
            c.on_message = self._guard(on_message)
        if on_publish is not None:
            cb = on_publish
            c.on_publish = lambda _c, _u, mid, _rc, _p: cb(mid)
        for filt, handler in self._topic_handlers:
            c.message_callback_add(filt, self._guard(handler))
        return c

    # ------------------------------------------------------------------ connect
    async def connect(self) -> None:
        """Connect and wait for the CONNACK; raise ConnectionError when refused."""
        b = self.broker
        await self.loop.run_in_executor(None, self._blocking_connect, b.host, b.port,
                                        b.keepalive_s)
        rc = await self._connack
        if (rc.is_failure and self.protocol == 5 and b.protocol == "auto"
                and "protocol" in str(rc).lower()):
            log.info("event=mqtt_protocol_fallback broker=%s:%d version=3.1.1", b.host, b.port)
            self._drop_quietly()
            self.protocol = 311
            self.client = self._make_client()
            self._connack = self.loop.create_future()
            self.lost.clear()
            await self.loop.run_in_executor(None, self._blocking_connect, b.host, b.port,
                                            b.keepalive_s)
            rc = await self._connack
        if rc.is_failure:
            raise ConnectionError(f"broker refused the connection: {rc}")
        self._misc = asyncio.create_task(self._misc_loop())

    def _blocking_connect(self, host: str, port: int, keepalive: int) -> None:
        if self.protocol == 5:
            props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]  # paho
            if self.session_expiry_s:
                props.SessionExpiryInterval = self.session_expiry_s
            self.client.connect(host, port, keepalive, clean_start=self.clean_start,
                                properties=props)
        else:
            self.client.connect(host, port, keepalive)

    def _drop_quietly(self) -> None:
        sock = self._sock
        if sock is not None:
            with contextlib.suppress(OSError, ValueError):
                self.loop.remove_reader(sock)
                self.loop.remove_writer(sock)
            self._writer_on = False
            self._sock = None
        with contextlib.suppress(Exception):
            self.client._sock_close()  # paho has no public close-socket

    def _on_connect(self, client: Any, userdata: Any, flags: Any, rc: Any, props: Any) -> None:
        if not self._connack.done():
            self._connack.set_result(rc)

    def _on_disconnect(self, client: Any, userdata: Any, flags: Any, rc: Any,
                       props: Any) -> None:
        self._call(self._mark_lost, rc)

    def _mark_lost(self, rc: Any) -> None:
        if not self._connack.done():
            self._connack.set_exception(ConnectionError(f"connection closed: {rc}"))
        self.lost.set()

    # ------------------------------------------------------------------ socket events
    def _call(self, fn: Callable[..., None], *args: Any) -> None:
        if threading.get_ident() == self._loop_thread:
            fn(*args)
        else:
            self.loop.call_soon_threadsafe(fn, *args)

    def _on_socket_open(self, client: Any, userdata: Any, sock: Any) -> None:
        self._call(self._watch, sock)

    def _watch(self, sock: Any) -> None:
        self._sock = sock
        self.loop.add_reader(sock, self._readable)
        self.flush()

    def _on_socket_close(self, client: Any, userdata: Any, sock: Any) -> None:
        self._call(self._unwatch, sock)

    def _unwatch(self, sock: Any) -> None:
        with contextlib.suppress(OSError, ValueError):
            self.loop.remove_reader(sock)
            self.loop.remove_writer(sock)
        self._writer_on = False
        if self._sock is sock:
            self._sock = None
        self._mark_lost("socket closed")

    def _guard(self, handler: Callable[[Any, Any, Any], None]
               ) -> Callable[[Any, Any, Any], None]:
        def guarded(client: Any, userdata: Any, msg: Any) -> None:
            try:
                handler(client, userdata, msg)
            except Exception as exc:  # the boundary: nothing escapes into paho
                self._handler_failed(exc)
        return guarded

    def on_topic(self, topic_filter: str, handler: Callable[[Any, Any, Any], None]) -> None:
        """Route messages matching ``topic_filter`` to ``handler`` (guarded like
        ``on_message``)."""
        self._topic_handlers.append((topic_filter, handler))
        self.client.message_callback_add(topic_filter, self._guard(handler))

    def _handler_failed(self, exc: BaseException) -> None:
        if self._on_error is not None:
            try:
                self._on_error(exc)
                return
            except Exception as exc2:  # the owner's accounting failed: still not into paho
                exc = exc2
        log.warning("event=message_handler_failed error=%s", describe(exc))

    def _readable(self) -> None:
        c = self.client
        try:
            c.loop_read(100)
            sock = self._sock
            while sock is not None and isinstance(sock, ssl.SSLSocket) and sock.pending():
                c.loop_read(100)
                sock = self._sock
            self.flush()
        except Exception as exc:  # paho could not digest the input: drop the connection
            log.warning("event=mqtt_read_failed error=%s", describe(exc))
            self._drop()

    def _drop(self) -> None:
        """End a connection paho can no longer drive; ``lost`` tells the owner."""
        sock = self._sock
        if sock is not None:
            self._unwatch(sock)
        with contextlib.suppress(Exception):
            self.client._sock_close()
        self._mark_lost("dropped")

    def flush(self) -> None:
        """Write what paho could not write at once; watch for writability if needed."""
        c = self.client
        if self._sock is None:
            return
        if c.want_write():
            c.loop_write()
        if c.want_write() and not self._writer_on and self._sock is not None:
            self.loop.add_writer(self._sock, self._writable)
            self._writer_on = True

    def _writable(self) -> None:
        c = self.client
        c.loop_write()
        if not c.want_write() and self._writer_on and self._sock is not None:
            self.loop.remove_writer(self._sock)
            self._writer_on = False

    async def _misc_loop(self) -> None:
        """Keep-alive and retries; owned by the link, cancelled and awaited by close()."""
        while not self.lost.is_set():
            try:
                self.client.loop_misc()
                self.flush()
            except Exception as exc:
                log.warning("event=mqtt_misc_failed error=%s", describe(exc))
                self._drop()
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.lost.wait(), MISC_PERIOD_S)

    # ------------------------------------------------------------------ use
    async def hold(self, stop: asyncio.Event) -> None:
        """Return when ``stop`` is set; raise ConnectionError if the broker goes first."""
        lost = asyncio.ensure_future(self.lost.wait())
        stopping = asyncio.ensure_future(stop.wait())
        try:
            await asyncio.wait({lost, stopping}, return_when=asyncio.FIRST_COMPLETED)
        finally:  # both waiters end here, also when we are cancelled
            lost.cancel()
            stopping.cancel()
        if not stop.is_set():
            raise ConnectionError("broker connection lost")

    @property
    def write_blocked(self) -> bool:
        """True while paho holds unwritten bytes (the socket buffer is full)."""
        return self._writer_on

    def publish(self, topic: str, payload: bytes | str, qos: int = 0,
                retain: bool = False, *, correlation: bytes | None = None) -> Any:
        """Publish; ``correlation`` becomes the MQTT 5 correlation data of the message
        (answers to requests that carried one; dropped on a 3.1.1 connection, which has
        no properties)."""
        if correlation is not None and self.protocol == 5:
            props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]  # paho
            props.CorrelationData = correlation
            return self.client.publish(topic, payload, qos=qos, retain=retain,
                                       properties=props)
        return self.client.publish(topic, payload, qos=qos, retain=retain)

    def subscribe(self, topics: list[tuple[str, int]]) -> None:
        if topics:
            self.client.subscribe(topics)
            self.flush()

    async def close(self, final: tuple[str, bytes, int, bool] | None = None) -> None:
        """Optionally publish a last message, then disconnect cleanly."""
        if self._sock is not None and not self.lost.is_set():
            if final is not None:
                info = self.publish(*final)
                with contextlib.suppress(Exception):
                    for _ in range(100):
                        if info.is_published():
                            break
                        self.flush()
                        await asyncio.sleep(0.01)
            with contextlib.suppress(Exception):
                self.client.disconnect()
                self.flush()
        sock = self._sock
        if sock is not None:
            self._unwatch(sock)
        with contextlib.suppress(Exception):
            self.client._sock_close()
        misc, self._misc = self._misc, None
        await cancel_and_wait(misc, "mqtt keep-alive")
