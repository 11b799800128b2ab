"""Siemens S7 driver (python-snap7's asyncio client, ISO-on-TCP, port 102 by default).

Addressing and sizes
--------------------
Points use engineers' notation (``DB1.DBD8:REAL``, ``M10.1``, ``IW4``; see
``_s7_address``). Reads are grouped by area (and DB number), sorted by byte offset and
coalesced into blocks no larger than what one response PDU carries: the negotiated PDU
size minus 18 bytes of header (S7 header 12, read parameters 2, data item header 4).
The CPU may lower the PDU size we ask for; the plan is rebuilt from the negotiated value
after every connect. A block that fails (an address past the end of a DB gives an
error for the whole request) is split until the bad point stands alone.

Bool writes
-----------
S7 has a bit-level write (transport size BIT), but servers differ in how faithfully
they apply it (python-snap7's own server writes the whole byte), so bools are written by
reading the byte, changing the bit and writing the byte back: neighbouring bits keep
their values. The read-modify-write is not atomic against the CPU's own program writing
the same byte within the same few milliseconds; map bits the PLC program writes and
bits Petra writes to different bytes.

Values
------
A value is judged per point: one that cannot be decoded marks its point BAD
(DEVICE_FAILURE); a REAL that is NaN or infinite, or any value outside the signal's
min/max, is written BAD with OUT_OF_RANGE, raw value kept (the device-value rule of
``_common``). Both are counted in REJECTED; the connection is never dropped for a
value. Writes refuse NaN/infinity (unless the signal allows them), values beyond the
S7 type's range and values outside the signal's limits before any request.

Connection
----------
Rack and slot give the remote TSAP (connection type PG, 0x0100 | rack << 5 | slot);
``remote_tsap`` overrides it (its high byte is the connection type). Any socket or
protocol-level connection error backs off and reconnects; every read signal is BAD /
NOT_CONNECTED meanwhile.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from snap7 import util
from snap7.async_client import AsyncClient
from snap7.error import S7ConnectionError, S7Error, S7TimeoutError
from snap7.type import Area

from petra.config._drivers import S7Config, S7Point
from petra.config._s7_address import S7Address, parse_s7_address
from petra.drivers._common import PolledDriver, WriteFollower
from petra.io import IoLimits, describe
from petra.shm import Segment
from petra.types import DriverCounter, Substatus, Value

logging.getLogger("snap7").setLevel(logging.CRITICAL)

AREAS = {"DB": Area.DB, "M": Area.MK, "I": Area.PE, "Q": Area.PA}
READ_OVERHEAD = 18
REAL_MAX = 3.4028234663852886e38
INT_RANGES = {"BYTE": (0, 255), "WORD": (0, 65535), "INT": (-32768, 32767),
              "DWORD": (0, 2**32 - 1), "DINT": (-(2**31), 2**31 - 1)}


class LinkDownError(ConnectionError):
    """The CPU connection is gone."""


class S7ValueError(ValueError):
    """A value that does not fit the point's S7 type."""


@dataclass(frozen=True, slots=True)
class S7Planned:
    pos: int
    slot: int
    point: S7Point
    addr: S7Address


@dataclass(frozen=True, slots=True)
class S7Block:
    area: str
    db: int
    start: int
    size: int
    points: tuple[S7Planned, ...]

    def __str__(self) -> str:
        where = f"DB{self.db}" if self.area == "DB" else self.area
        return f"{where} bytes {self.start}..{self.start + self.size - 1}"


def _block(points: list[S7Planned] | tuple[S7Planned, ...]) -> S7Block:
    start = min(p.addr.byte for p in points)
    end = max(p.addr.byte + p.addr.size for p in points)
    return S7Block(points[0].addr.area, points[0].addr.db, start, end - start, tuple(points))


def plan_s7(points: list[S7Planned], max_bytes: int, max_gap: int) -> list[S7Block]:
    """Coalesce points per area/DB into blocks of at most ``max_bytes``."""
    groups: dict[tuple[str, int], list[S7Planned]] = {}
    for p in points:
        groups.setdefault((p.addr.area, p.addr.db), []).append(p)
    blocks: list[S7Block] = []
    for _, group in sorted(groups.items()):
        group.sort(key=lambda p: (p.addr.byte, p.pos))
        cur: list[S7Planned] = []
        start = end = 0
        for p in group:
            b, e = p.addr.byte, p.addr.byte + p.addr.size
            if cur and b - end <= max_gap and max(end, e) - start <= max_bytes:
                cur.append(p)
                end = max(end, e)
                continue
            if cur:
                blocks.append(_block(cur))
            cur, start, end = [p], b, e
        if cur:
            blocks.append(_block(cur))
    return blocks


def decode_s7(data: bytearray, off: int, addr: S7Address) -> bool | int | float:
    """A value of the address's type from ``data`` at byte ``off`` (big-endian)."""
    t = addr.type
    if t == "BOOL":
        return bool(util.get_bool(data, off, addr.bit or 0))
    if t in ("REAL", "LREAL"):
        return float((util.get_real if t == "REAL" else util.get_lreal)(data, off))
    getter = {"BYTE": util.get_byte, "WORD": util.get_word, "INT": util.get_int,
              "DWORD": util.get_dword, "DINT": util.get_dint}[t]
    return int(getter(data, off))


def encode_s7(value: int | float, addr: S7Address, *,
              allow_nonfinite: bool = False) -> bytearray:
    """Bytes of ``value`` for a non-bool address; range-checked. NaN and infinities are
    refused unless ``allow_nonfinite``; so is a finite value beyond REAL's range."""
    t = addr.type
    buf = bytearray(addr.size)
    if t in INT_RANGES:
        if isinstance(value, float):
            if not math.isfinite(value):
                raise S7ValueError(f"{value} cannot be written as {t}")
            value = round(value)
        lo, hi = INT_RANGES[t]
        if not lo <= value <= hi:
            raise S7ValueError(f"{value} is outside the {t} range {lo}..{hi}")
        setter = {"BYTE": util.set_byte, "WORD": util.set_word, "INT": util.set_int,
                  "DWORD": util.set_dword, "DINT": util.set_dint}[t]
        setter(buf, 0, value)
        return buf
    if t not in ("REAL", "LREAL"):
        raise S7ValueError(f"{t} is not a value type for {value!r}")
    try:
        f = float(value)
    except OverflowError:
        raise S7ValueError(f"{value} is outside the {t} range") from None
    if not math.isfinite(f):
        if not allow_nonfinite:
            raise S7ValueError(f"{f} is not a finite number")
    elif t == "REAL" and abs(f) > REAL_MAX:
        raise S7ValueError(f"{f} is outside the REAL range")
    (util.set_real if t == "REAL" else util.set_lreal)(buf, 0, f)
    return buf


class S7Driver(PolledDriver):
    """Polls and writes the points of one S7 CPU."""

    def __init__(self, cfg: S7Config, segment: Segment, *,
                 clock: Callable[[], float] = time.monotonic,
                 rng: random.Random | None = None) -> None:
        super().__init__(cfg.name, segment, IoLimits.from_config(cfg.retry, cfg.timeouts),
                         clock=clock, rng=rng)
        self.cfg = cfg
        self.planned = [S7Planned(i, segment.index(p.signal), p, parse_s7_address(p.address))
                        for i, p in enumerate(cfg.points)]
        self.periods = {"default": cfg.poll_period_s,
                        **{g: pg.period_s for g, pg in cfg.groups.items()}}
        self.pdu = cfg.pdu_size
        self.plans: dict[str, list[S7Block]] = {}
        self._replan()
        self._read_slots = sorted({p.slot for p in self.planned if p.point.direction != "write"})
        self.write_points: dict[int, list[S7Planned]] = {}
        for p in self.planned:
            if p.point.direction != "read":
                self.write_points.setdefault(p.slot, []).append(p)
        self.follower = WriteFollower(segment, self.write_points)
        self.on_connect = cfg.on_connect
        self.reassert_slots = sorted(slot for slot, pts in self.write_points.items()
                                     if all(x.point.direction == "write" for x in pts))
        self.pending: dict[int, list[Any]] = {}
        self.point_errors: dict[int, str] = {}
        self.client: AsyncClient | None = None

    def _replan(self) -> None:
        max_bytes = max(8, self.pdu - READ_OVERHEAD)
        self.plans = {}
        for group in self.periods:
            pts = [p for p in self.planned
                   if p.point.group == group and p.point.direction != "write"]
            if pts:
                self.plans[group] = plan_s7(pts, max_bytes, self.cfg.max_gap)

    def _endpoint(self) -> str:
        return f"{self.cfg.host}:{self.cfg.port}"

    def _read_indices(self) -> list[int]:
        return self._read_slots

    async def _connect(self) -> None:
        cfg = self.cfg
        client = AsyncClient()
        client.pdu_length = cfg.pdu_size
        rack, slot = cfg.rack, cfg.slot
        if cfg.remote_tsap is not None:
            client.set_connection_type(cfg.remote_tsap >> 8)
            rack, slot = (cfg.remote_tsap >> 5) & 0x7, cfg.remote_tsap & 0x1F
        if cfg.local_tsap is not None:
            client.local_tsap = cfg.local_tsap
        self.client = client
        await client.connect(cfg.host, rack, slot, tcp_port=cfg.port)
        negotiated = int(client.pdu_length)
        if negotiated != self.pdu:
            self.log.info("event=pdu_negotiated driver=%s requested=%d pdu=%d", self.name,
                          cfg.pdu_size, negotiated)
            self.pdu = negotiated
            self._replan()

    async def _close(self) -> None:
        client, self.client = self.client, None
        if client is not None:
            await client.disconnect()

    async def _call(self, coro: Any) -> Any:
        t0 = time.perf_counter_ns()
        try:
            result = await asyncio.wait_for(coro, self.limits.request_timeout_s)
        except (S7ConnectionError, S7TimeoutError, OSError, TimeoutError) as exc:
            self.tm.inc(DriverCounter.ERRORS)
            raise LinkDownError(f"{type(exc).__name__}: {exc}") from None
        self.tm.set(DriverCounter.LAST_RTT_US, (time.perf_counter_ns() - t0) // 1000)
        return result

    def _queue_write(self, slot: int, value: Value) -> None:
        self.pending[slot] = [value, 0]

    async def _poll_group(self, group: str) -> None:
        plan: list[S7Block] = []
        for block in self.plans[group]:
            plan.extend(await self._read_block(block))
        self.plans[group] = plan

    async def _read_block(self, block: S7Block) -> list[S7Block]:
        assert self.client is not None
        try:
            data = await self._call(self.client.read_area(AREAS[block.area], block.db,
                                                          block.start, block.size))
        except S7Error as exc:
            self.tm.inc(DriverCounter.ERRORS)
            if len(block.points) > 1:
                mid = len(block.points) // 2
                out: list[S7Block] = []
                for half in (_block(block.points[:mid]), _block(block.points[mid:])):
                    out.extend(await self._read_block(half))
                return out
            self._point_failed(block.points[0], str(exc))
            return [block]
        if len(data) != block.size:
            self.tm.inc(DriverCounter.REJECTED)
            self.rlog(logging.WARNING, f"size:{block}", "event=bad_reply driver=%s block=%s "
                      "error='%d bytes, expected %d'", self.name, block, len(data), block.size)
            self.port.put_bad([p.slot for p in block.points], Substatus.DEVICE_FAILURE)
            return [block]
        self.tm.inc(DriverCounter.READS)
        for p in block.points:
            try:
                value = decode_s7(data, p.addr.byte - block.start, p.addr)
            except Exception as exc:  # per point: one undecodable value never drops the link
                self.tm.inc(DriverCounter.REJECTED)
                self.rlog(logging.WARNING, f"decode:{p.pos}", "event=bad_value driver=%s "
                          "signal=%s address=%s error=%s", self.name, p.point.signal,
                          p.point.address, describe(exc))
                self.port.put_bad([p.slot], Substatus.DEVICE_FAILURE)
                continue
            if p.point.scale != 1.0 or p.point.offset != 0.0:
                value = float(value) * p.point.scale + p.point.offset
            if p.pos in self.point_errors:
                del self.point_errors[p.pos]
            self.store(p.slot, value)
        return [block]

    def _point_failed(self, p: S7Planned, why: str) -> None:
        msg = f"{p.point.address}: {why}"
        if self.point_errors.get(p.pos) != msg:
            self.point_errors[p.pos] = msg
            self.log.error("event=point_error driver=%s signal=%s error=%r", self.name,
                           p.point.signal, msg)
        self.port.put_bad([p.slot], Substatus.CONFIG)

    async def _do_writes(self) -> None:
        for slot in list(self.pending):
            entry = self.pending[slot]
            done = True
            for p in self.write_points[slot]:
                try:
                    await self._write_point(p, entry[0])
                except LinkDownError:
                    raise
                except S7Error as exc:
                    entry[1] += 1
                    if entry[1] >= self.limits.write_attempts:
                        self.tm.inc(DriverCounter.WRITE_FAILURES)
                        self.log.error("event=write_failed driver=%s signal=%s attempts=%d "
                                       "error=%s", self.name, p.point.signal, entry[1], exc)
                    else:
                        done = False
                except Exception as exc:  # S7ValueError, or anything else about this value
                    self.tm.inc(DriverCounter.WRITE_FAILURES)
                    self.rlog(logging.ERROR, f"wvalue:{p.pos}", "event=write_refused "
                              "driver=%s signal=%s value=%r error=%s", self.name,
                              p.point.signal, entry[0], describe(exc))
            if done and self.pending.get(slot) is entry:
                del self.pending[slot]

    async def _write_point(self, p: S7Planned, value: Value) -> None:
        assert self.client is not None
        a = p.addr
        area = AREAS[a.area]
        if a.type == "BOOL":
            cur = await self._call(self.client.read_area(area, a.db, a.byte, 1))
            buf = bytearray(cur)
            util.set_bool(buf, 0, a.bit or 0, bool(value))
        else:
            raw: int | float = value if not isinstance(value, bool) else int(value)
            if p.point.scale != 1.0 or p.point.offset != 0.0:
                raw = (float(raw) - p.point.offset) / p.point.scale
            buf = encode_s7(raw, a, allow_nonfinite=self.port.infos[p.slot].allow_nonfinite)
        await self._call(self.client.write_area(area, a.db, a.byte, buf))
        self.tm.inc(DriverCounter.WRITES)
