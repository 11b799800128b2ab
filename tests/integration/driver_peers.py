"""Real peers for the driver integration tests, all on 127.0.0.1 (fixtures in conftest.py).

- :class:`ModbusServer`: a pymodbus TCP (or RTU-over-pty) server in a thread with its
  own asyncio loop; values are read and set through its simulator datastore.
- :class:`S7Server`: python-snap7's own S7 server with DB1, M, I and Q areas.
- :class:`Mosquitto`: a mosquitto broker process, plain, with password auth or with TLS
  (certificates generated per session with ``cryptography``).
- :class:`PtyPair`: a socat pseudo-terminal pair for Modbus RTU.
- :func:`driver_process`: runs one driver or the mqtt-out sink in a spawned process
  (its own pid, so journal entries written by the test are not taken for its own).

Servers bind port 0 (or a port found free by binding) and are ready when their
listening socket exists: no sleeps. Missing peers (mosquitto, socat binaries) fail the
test that needs them with a message naming the package; they are never skipped.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import ipaddress
import multiprocessing
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from petra.shm import Heartbeat, Segment, SignalDef, read_heartbeats

HERE = Path(__file__).parent


# ----------------------------------------------------------------------------- helpers
def wait_until(pred: Callable[[], Any], timeout: float = 10.0, what: str = "condition",
               interval: float = 0.01) -> Any:
    """Poll ``pred`` until it returns a truthy value; fail naming ``what`` on timeout."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = pred()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


def free_port() -> int:
    """A port free right now (for peers that must come back on the same port)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def require_binary(name: str, package: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed: apt-get install {package} (the test run "
                    "needs it; .ci/run installs it)")
    return path


@pytest.fixture
def make_segment() -> Iterator[Callable[[list[SignalDef]], Segment]]:
    """Create segments under unique instance names; unlinked at teardown."""
    made: list[Segment] = []

    def make(defs: list[SignalDef], journal_capacity: int = 1 << 16) -> Segment:
        inst = f"t{uuid.uuid4().hex[:12]}"
        seg = Segment.create(inst, defs, journal_capacity=journal_capacity)
        made.append(seg)
        return seg

    yield make
    for seg in made:
        with contextlib.suppress(Exception):
            seg.unlink()
        seg.close()


def heartbeat(seg: Segment, role: str) -> Heartbeat | None:
    for hb in read_heartbeats(seg):
        if hb.role == role:
            return hb
    return None


class DriverProcess:
    """A driver or sink running in its own (spawned) process."""

    def __init__(self, cfg: Any, seg: Segment, role: str, broker_default: Any = None) -> None:
        from petra.config import MqttConfig

        ctx = multiprocessing.get_context("spawn")
        self.seg = seg
        self.role = role
        if isinstance(cfg, MqttConfig):
            from petra.sinks import run_standalone as run_sink

            self.proc = ctx.Process(target=run_sink, args=(cfg, seg.instance), daemon=True)
        else:
            from petra.drivers import run_standalone

            self.proc = ctx.Process(target=run_standalone, args=(cfg, seg.instance),
                                    kwargs={"broker_default": broker_default}, daemon=True)
        self.proc.start()

    def hb(self) -> Heartbeat | None:
        return heartbeat(self.seg, self.role)

    def counters(self) -> tuple[int, ...]:
        hb = self.hb()
        return hb.counters if hb else (0,) * 8

    def counter(self, i: int) -> int:
        return self.counters()[int(i)]

    def wait_state(self, state: int, timeout: float = 15.0) -> None:
        wait_until(lambda: (self.hb() is not None and self.counter(0) == int(state))
                   or not self.proc.is_alive(), timeout, f"{self.role} state {state}")
        assert self.proc.is_alive(), f"{self.role} exited with {self.proc.exitcode}"

    def stop(self, timeout: float = 10.0) -> int:
        if self.proc.is_alive() and self.proc.pid is not None:
            os.kill(self.proc.pid, signal.SIGTERM)
        self.proc.join(timeout)
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join(5)
            raise AssertionError(f"{self.role} did not stop on SIGTERM within {timeout}s")
        return int(self.proc.exitcode or 0)


@contextlib.contextmanager
def driver_process(cfg: Any, seg: Segment, broker_default: Any = None) -> Iterator[DriverProcess]:
    from petra.config._drivers import MqttConfig

    role = "sink:mqtt-out" if isinstance(cfg, MqttConfig) else f"driver:{cfg.name}"
    dp = DriverProcess(cfg, seg, role, broker_default)
    try:
        yield dp
    finally:
        rc = dp.stop()
    assert rc == 0, f"{role} exited with status {rc}"


# ----------------------------------------------------------------------------- Modbus
class ModbusServer:
    """A pymodbus server (TCP, or RTU on a serial port) in its own thread and loop.

    Each unit id has coils, discrete inputs, holding and input registers at addresses
    0..size-1; any other address answers exception 2 (illegal data address)."""

    def __init__(self, units: dict[int, int], port: int = 0, serial: str | None = None) -> None:
        self.units = units
        self.port = port
        self.serial = serial
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.server: Any = None
        self.requests = 0

    def _devices(self) -> list[Any]:
        from pymodbus.simulator import DataType, SimData, SimDevice

        return [SimDevice(id=unit, simdata=(
            [SimData(0, count=size, datatype=DataType.BITS)],
            [SimData(0, count=size, datatype=DataType.BITS)],
            [SimData(0, count=size, datatype=DataType.REGISTERS)],
            [SimData(0, count=size, datatype=DataType.REGISTERS)]))
            for unit, size in self.units.items()]

    def _run(self, coro: Any, timeout: float = 10.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def start(self) -> int:
        async def _start() -> int:
            from pymodbus.framer import FramerType
            from pymodbus.server import ModbusSerialServer, ModbusTcpServer

            if self.serial is not None:
                self.server = ModbusSerialServer(self._devices(), framer=FramerType.RTU,
                                                 port=self.serial, baudrate=115200)
            else:
                self.server = ModbusTcpServer(self._devices(), address=("127.0.0.1", self.port))
            self._task = asyncio.ensure_future(self.server.serve_forever())
            for _ in range(1000):
                if self.server.transport is not None:
                    break
                if self._task.done():
                    self._task.result()
                await asyncio.sleep(0.005)
            else:
                raise RuntimeError("modbus server did not start listening")
            if self.serial is None:
                return int(self.server.transport.sockets[0].getsockname()[1])
            return 0

        port = self._run(_start())
        if self.serial is None:
            self.port = port
        return self.port

    def stop(self) -> None:
        async def _stop() -> None:
            if self.server is not None:
                await self.server.shutdown()
                self.server = None

        self._run(_stop())

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.stop()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)

    def get(self, unit: int, fc: int, address: int, count: int = 1) -> list[Any]:
        return list(self._run(self.server.context.async_getValues(unit, fc, address, count)))

    def set(self, unit: int, fc: int, address: int, values: list[Any]) -> None:
        rc = self._run(self.server.context.async_setValues(unit, fc, address, values))
        assert rc is None, f"set failed: {rc}"


@pytest.fixture
def modbus_server() -> Iterator[ModbusServer]:
    srv = ModbusServer({1: 200, 2: 50})
    srv.start()
    yield srv
    srv.close()


class PtyPair:
    """``socat -d -d pty,raw,echo=0,link=A pty,raw,echo=0,link=B``: two connected ptys."""

    def __init__(self, tmp: Path) -> None:
        socat = require_binary("socat", "socat")
        self.a = str(tmp / "ttyA")
        self.b = str(tmp / "ttyB")
        self.proc = subprocess.Popen(
            [socat, "-d", "-d", f"pty,raw,echo=0,link={self.a}", f"pty,raw,echo=0,link={self.b}"],
            stderr=subprocess.PIPE, text=True)
        # ready when socat logs the transfer loop start; both links then exist
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            if "starting data transfer loop" in line:
                break
        else:
            raise RuntimeError(f"socat failed: exit {self.proc.wait()}")
        threading.Thread(target=self.proc.stderr.read, daemon=True).start()

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(5)


@pytest.fixture
def pty_pair(tmp_path: Path) -> Iterator[PtyPair]:
    pair = PtyPair(tmp_path)
    yield pair
    pair.close()


# ----------------------------------------------------------------------------- S7
class S7Server:
    """python-snap7's server with DB1 (256 bytes), M, I and Q (64 bytes each)."""

    def __init__(self) -> None:
        self.db1 = bytearray(256)
        self.mk = bytearray(64)
        self.pe = bytearray(64)
        self.pa = bytearray(64)
        self.port = 0
        self.server: Any = None

    def start(self) -> int:
        import snap7
        from snap7.type import SrvArea

        srv = snap7.Server(log=False)
        srv.register_area(SrvArea.DB, 1, self.db1)
        srv.register_area(SrvArea.MK, 0, self.mk)
        srv.register_area(SrvArea.PE, 0, self.pe)
        srv.register_area(SrvArea.PA, 0, self.pa)
        srv.start_to("127.0.0.1", self.port or 0)
        if not self.port:
            assert srv.server_socket is not None
            self.port = int(srv.server_socket.getsockname()[1])
        self.server = srv
        return self.port

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server.destroy()
            self.server = None


@pytest.fixture
def s7_server() -> Iterator[S7Server]:
    srv = S7Server()
    srv.start()
    yield srv
    srv.stop()


# ----------------------------------------------------------------------------- MQTT
def _chown_mosquitto(*paths: Path) -> None:
    """Started as root, mosquitto drops to user mosquitto before reading its files."""
    if os.geteuid() != 0:
        return
    import pwd

    try:
        pw = pwd.getpwnam("mosquitto")
    except KeyError:
        return
    for p in paths:
        os.chown(p, pw.pw_uid, pw.pw_gid)


class Certs:
    """A throwaway CA, a server certificate for 127.0.0.1/localhost and a client one."""

    def __init__(self, d: Path) -> None:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID

        d.mkdir(parents=True, exist_ok=True)
        now = datetime.datetime.now(datetime.UTC)

        def key() -> ec.EllipticCurvePrivateKey:
            return ec.generate_private_key(ec.SECP256R1())

        def name(cn: str) -> x509.Name:
            return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

        def write_key(k: ec.EllipticCurvePrivateKey, path: Path) -> None:
            path.write_bytes(k.private_bytes(serialization.Encoding.PEM,
                                             serialization.PrivateFormat.PKCS8,
                                             serialization.NoEncryption()))

        ca_key = key()
        ca = (x509.CertificateBuilder().subject_name(name("petra test CA"))
              .issuer_name(name("petra test CA")).public_key(ca_key.public_key())
              .serial_number(x509.random_serial_number())
              .not_valid_before(now - datetime.timedelta(minutes=5))
              .not_valid_after(now + datetime.timedelta(days=1))
              .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
              .sign(ca_key, hashes.SHA256()))

        def leaf(cn: str, server: bool) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
            k = key()
            b = (x509.CertificateBuilder().subject_name(name(cn)).issuer_name(ca.subject)
                 .public_key(k.public_key()).serial_number(x509.random_serial_number())
                 .not_valid_before(now - datetime.timedelta(minutes=5))
                 .not_valid_after(now + datetime.timedelta(days=1)))
            if server:
                b = b.add_extension(x509.SubjectAlternativeName([
                    x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                    x509.DNSName("localhost")]), critical=False)
            return b.sign(ca_key, hashes.SHA256()), k

        self.ca = d / "ca.pem"
        self.ca.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
        srv, srv_key = leaf("127.0.0.1", True)
        cli, cli_key = leaf("petra-client", False)
        self.server_cert, self.server_key = d / "server.pem", d / "server.key"
        self.client_cert, self.client_key = d / "client.pem", d / "client.key"
        self.server_cert.write_bytes(srv.public_bytes(serialization.Encoding.PEM))
        write_key(srv_key, self.server_key)
        self.client_cert.write_bytes(cli.public_bytes(serialization.Encoding.PEM))
        write_key(cli_key, self.client_key)


class Mosquitto:
    """A mosquitto broker on 127.0.0.1 with our own config file; restartable."""

    def __init__(self, *, users: dict[str, str] | None = None,
                 certs: Certs | None = None, require_client_cert: bool = False,
                 persist: bool = False) -> None:
        self.exe = require_binary("mosquitto", "mosquitto")
        # Its own directory outside pytest's 0700 tmp tree: started as root, mosquitto
        # drops to user mosquitto before it opens the password file, keys and store.
        self.dir = Path(tempfile.mkdtemp(prefix="petra-mq-"))
        self.dir.chmod(0o755)
        self.cleanup: list[Path] = [self.dir]
        self.port = free_port()
        self.users = users
        self.certs = certs
        self.proc: subprocess.Popen[bytes] | None = None
        lines = [f"listener {self.port} 127.0.0.1", "max_queued_messages 1000000",
                 "max_inflight_messages 0", "log_dest stderr", "log_type error",
                 "log_type warning"]
        if persist:  # sessions and queued QoS 1 messages survive a restart
            store = self.dir / "store"
            store.mkdir()
            _chown_mosquitto(store)
            lines += ["persistence true", f"persistence_location {store}/"]
        else:
            lines += ["persistence false"]
        if users is not None:
            pw = self.dir / "passwd"
            pw.write_text("")
            for user, password in users.items():
                subprocess.run(["mosquitto_passwd", "-b", str(pw), user, password], check=True,
                               capture_output=True)
            _chown_mosquitto(pw)
            lines += ["allow_anonymous false", f"password_file {pw}"]
        else:
            lines += ["allow_anonymous true"]
        if certs is not None:
            for f in (certs.ca, certs.server_cert, certs.server_key):
                shutil.copy(f, self.dir / f.name)
                _chown_mosquitto(self.dir / f.name)
            lines += [f"cafile {self.dir / certs.ca.name}",
                      f"certfile {self.dir / certs.server_cert.name}",
                      f"keyfile {self.dir / certs.server_key.name}", "tls_version tlsv1.2"]
            if require_client_cert:
                lines += ["require_certificate true"]
        self.conf = self.dir / "mosquitto.conf"
        self.conf.write_text("\n".join(lines) + "\n")

    def start(self) -> None:
        self.proc = subprocess.Popen([self.exe, "-c", str(self.conf)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

        def listening() -> bool:
            assert self.proc is not None
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode() if self.proc.stderr else ""
                raise RuntimeError(f"mosquitto exited {self.proc.returncode}: {err}")
            with socket.socket() as s:
                return s.connect_ex(("127.0.0.1", self.port)) == 0

        wait_until(listening, 10, "mosquitto to listen")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)
            self.proc = None

    def remove(self) -> None:
        self.stop()
        for p in self.cleanup:
            shutil.rmtree(p, ignore_errors=True)

    def client(self, client_id: str | None = None, clean: bool = True) -> Any:
        """A connected paho client (loop running in its own thread) for the test side;
        ``clean=False`` keeps its session (and QoS 1 messages) across reconnects."""
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        c = mqtt.Client(CallbackAPIVersion.VERSION2,
                        client_id=client_id or f"test-{uuid.uuid4().hex[:8]}",
                        clean_session=clean)
        c.reconnect_delay_set(1, 1)
        if self.users:
            user, pw = next(iter(self.users.items()))
            c.username_pw_set(user, pw)
        if self.certs is not None:
            c.tls_set(ca_certs=str(self.certs.ca), certfile=str(self.certs.client_cert),
                      keyfile=str(self.certs.client_key))
        connected = threading.Event()
        c.on_connect = lambda *a: connected.set()
        c.connect("127.0.0.1", self.port)
        c.loop_start()
        assert connected.wait(10), "test client could not connect"
        return c


@pytest.fixture
def mosquitto() -> Iterator[Mosquitto]:
    broker = Mosquitto()
    broker.start()
    yield broker
    broker.remove()


@pytest.fixture(scope="session")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return Certs(tmp_path_factory.mktemp("certs"))


class Collector:
    """Subscribes a test client and keeps every message (topic, payload, retain)."""

    def __init__(self, client: Any, topic: str, qos: int = 1) -> None:
        self.messages: list[tuple[str, bytes, bool]] = []
        self.lock = threading.Lock()
        subscribed = threading.Event()
        client.on_message = self._on
        client.on_subscribe = lambda *a: subscribed.set()
        client.subscribe(topic, qos)
        assert subscribed.wait(10)

    def _on(self, client: Any, userdata: Any, msg: Any) -> None:
        with self.lock:
            self.messages.append((msg.topic, bytes(msg.payload), bool(msg.retain)))

    def on_topic(self, topic: str) -> list[bytes]:
        with self.lock:
            return [p for t, p, _ in self.messages if t == topic]

    def count(self) -> int:
        with self.lock:
            return len(self.messages)
