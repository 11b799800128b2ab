"""Modbus TCP and RTU driver: one connection per gateway, all its unit ids and points.

Each poll group reads its planned blocks (see ``_modbus_plan``) in turn over the one
connection; a gateway often accepts only a couple of connections, and an RTU line is a
single master by nature, so requests are strictly sequential.

Failure classes, and what the driver does next (degrade, never crash):

- Connection lost (TCP closed, connect refused): every read signal goes BAD /
  NOT_CONNECTED, the state goes to BACKOFF, reconnect after the backoff delay.
- No reply (timeout) on every block of a round: treated as a lost connection (an RTU
  line has no connection to lose; silence is how a dead device shows).
- Exception reply on a block: the block is split until the bad point stands alone;
  that point goes BAD (substatus CONFIG for an illegal address, DEVICE_FAILURE for
  others) with an error line naming the signal, unit, table and address.
- A reply of the wrong size or from the wrong unit: its points go BAD
  (DEVICE_FAILURE), counted in REJECTED, logged (rate-limited). A value that cannot be
  decoded marks only its own point so; one that decodes but does not suit its signal
  (NaN, outside min/max, a uint64 beyond int64) goes BAD with OUT_OF_RANGE by the
  device-value rule (``_common``). Neither ever drops the connection.
- A value that cannot be written (out of the register type's range, NaN, outside the
  signal's limits) is refused before any request, counted in WRITE_FAILURES.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from typing import Any

from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient
from pymodbus.exceptions import ConnectionException, ModbusException, ModbusIOException
from pymodbus.framer import FramerType

from petra.config._drivers import ModbusRtuConfig, ModbusTcpConfig
from petra.drivers._common import PolledDriver
from petra.drivers._modbus_codec import (
    decode,
    encode,
    get_bit,
    scale_in,
    scale_out,
    set_bit,
)
from petra.drivers._modbus_plan import BIT_TABLES, PlannedPoint, ReadBlock, plan_reads, split_block
from petra.io import IoLimits, describe
from petra.shm import Segment
from petra.types import DriverCounter, Substatus, Value

EXC_ILLEGAL_ADDRESS = 2
EXC_NAMES = {1: "illegal function", 2: "illegal data address", 3: "illegal data value",
             4: "device failure", 5: "acknowledge", 6: "device busy",
             10: "gateway path unavailable", 11: "gateway target failed to respond"}

logging.getLogger("pymodbus").setLevel(logging.CRITICAL)


class LinkDownError(ConnectionError):
    """The connection to the device is gone (or the device is silent)."""


class _Pending:
    __slots__ = ("attempts", "value")

    def __init__(self, value: Value) -> None:
        self.value = value
        self.attempts = 0


class ModbusDriver(PolledDriver):
    """Polls and writes the points of one Modbus TCP or RTU connection."""

    def __init__(self, cfg: ModbusTcpConfig | ModbusRtuConfig, segment: Segment, *,
                 clock: Callable[[], float] = time.monotonic,
                 rng: random.Random | None = None) -> None:
        super().__init__(cfg.name, segment, IoLimits.from_config(cfg.retry, cfg.timeouts),
                         clock=clock, rng=rng)
        self.cfg = cfg
        planned = [PlannedPoint(i, segment.index(p.signal), p,
                                cfg.unit_id if p.unit_id is None else p.unit_id)
                   for i, p in enumerate(cfg.points)]
        self.periods = {"default": cfg.poll_period_s,
                        **{g: pg.period_s for g, pg in cfg.groups.items()}}
        self.plans: dict[str, list[ReadBlock]] = {}
        for group in self.periods:
            pts = [pp for pp in planned
                   if pp.point.group == group and pp.point.direction != "write"]
            if pts:
                self.plans[group] = plan_reads(
                    pts, coalesce=cfg.coalesce, max_gap=cfg.max_gap,
                    max_registers=cfg.max_registers_per_read, max_bits=cfg.max_bits_per_read)
        self._read_slots = sorted({pp.slot for pp in planned if pp.point.direction != "write"})
        self.write_points: dict[int, list[PlannedPoint]] = {}
        for pp in planned:
            if pp.point.direction != "read":
                self.write_points.setdefault(pp.slot, []).append(pp)
        from petra.drivers._common import WriteFollower

        self.follower = WriteFollower(segment, self.write_points)
        self.on_connect = cfg.on_connect
        self.reassert_slots = sorted(slot for slot, pts in self.write_points.items()
                                     if all(x.point.direction == "write" for x in pts))
        self.pending: dict[int, _Pending] = {}
        self.point_errors: dict[int, str] = {}
        self.client: Any = None

    # ------------------------------------------------------------------ hooks
    def _endpoint(self) -> str:
        if isinstance(self.cfg, ModbusTcpConfig):
            return f"{self.cfg.host}:{self.cfg.port}"
        return self.cfg.device

    def _read_indices(self) -> list[int]:
        return self._read_slots

    def _make_client(self) -> Any:
        cfg = self.cfg
        timeout = self.limits.request_timeout_s
        if isinstance(cfg, ModbusTcpConfig):
            return AsyncModbusTcpClient(cfg.host, port=cfg.port, reconnect_delay=0, retries=0,
                                        timeout=timeout, name=f"petra-{cfg.name}")
        return AsyncModbusSerialClient(cfg.device, framer=FramerType.RTU, baudrate=cfg.baudrate,
                                       parity=cfg.parity, stopbits=cfg.stopbits,
                                       bytesize=cfg.bytesize, reconnect_delay=0, retries=0,
                                       timeout=timeout, name=f"petra-{cfg.name}")

    async def _connect(self) -> None:
        self.client = self._make_client()
        if not await self.client.connect():
            raise LinkDownError(f"cannot connect to {self._endpoint()}")

    async def _close(self) -> None:
        client, self.client = self.client, None
        if client is not None:
            client.close()

    def _queue_write(self, slot: int, value: Value) -> None:
        self.pending[slot] = _Pending(value)

    # ------------------------------------------------------------------ reads
    async def _poll_group(self, group: str) -> None:
        new_plan: list[ReadBlock] = []
        silent = 0
        blocks = self.plans[group]
        for block in blocks:
            try:
                new_plan.extend(await self._read_block(block))
            except TimeoutError:
                silent += 1
                new_plan.append(block)
                self.port.put_bad([pp.slot for pp in block.points], Substatus.NOT_CONNECTED)
        self.plans[group] = new_plan
        if blocks and silent == len(blocks):
            raise LinkDownError(f"no reply from {self._endpoint()} to any read")

    async def _request(self, method: str, *args: Any, **kwargs: Any) -> Any:
        """One request; connection loss raises LinkDownError, silence TimeoutError."""
        client = self.client
        if client is None or not client.connected:
            raise LinkDownError("not connected")
        t0 = time.perf_counter_ns()
        try:
            rr = await getattr(client, method)(*args, **kwargs)
        except ModbusIOException as exc:
            self.tm.inc(DriverCounter.ERRORS)
            if not client.connected:
                raise LinkDownError(str(exc)) from None
            raise TimeoutError(str(exc)) from None
        except ConnectionException as exc:
            self.tm.inc(DriverCounter.ERRORS)
            raise LinkDownError(str(exc)) from None
        self.tm.set(DriverCounter.LAST_RTT_US, (time.perf_counter_ns() - t0) // 1000)
        return rr

    async def _read_block(self, block: ReadBlock) -> list[ReadBlock]:
        method = {"coil": "read_coils", "discrete_input": "read_discrete_inputs",
                  "holding": "read_holding_registers", "input": "read_input_registers"}
        try:
            rr = await self._request(method[block.table], block.start, count=block.count,
                                     device_id=block.unit)
        except ModbusException as exc:
            self._reject(block, str(exc))
            return [block]
        if rr.isError():
            self.tm.inc(DriverCounter.ERRORS)
            if len(block.points) > 1:
                out: list[ReadBlock] = []
                for half in split_block(block):
                    out.extend(await self._read_block(half))
                return out
            self._point_failed(block.points[0], int(getattr(rr, "exception_code", 0)))
            return [block]
        if getattr(rr, "dev_id", block.unit) != block.unit:
            self._reject(block, f"reply from unit {rr.dev_id}, expected {block.unit}")
            return [block]
        data = rr.bits if block.table in BIT_TABLES else rr.registers
        if len(data) < block.count:
            self._reject(block, f"reply holds {len(data)} values, expected {block.count}")
            return [block]
        self.tm.inc(DriverCounter.READS)
        for pp in block.points:
            off = pp.start - block.start
            try:
                value = self._decode_point(pp, data[off:off + pp.point.words])
            except Exception as exc:  # per point: one undecodable value never drops the link
                self.tm.inc(DriverCounter.REJECTED)
                self.rlog(logging.WARNING, f"decode:{pp.pos}", "event=bad_value driver=%s "
                          "signal=%s unit=%d %s=%d error=%s", self.name, pp.point.signal,
                          pp.unit, pp.point.table, pp.point.address, describe(exc))
                self.port.put_bad([pp.slot], Substatus.DEVICE_FAILURE)
                continue
            if pp.pos in self.point_errors:
                del self.point_errors[pp.pos]
                self.log.info("event=point_recovered driver=%s signal=%s", self.name,
                              pp.point.signal)
            self.store(pp.slot, value)
        return [block]

    def _decode_point(self, pp: PlannedPoint, data: list[Any]) -> int | float | bool:
        p = pp.point
        if p.table in BIT_TABLES:
            return bool(data[0])
        if p.bit is not None:
            return get_bit(int(data[0]), p.bit)
        return scale_in(decode([int(r) for r in data], p.value_type, p.order), p.scale,
                        p.offset)

    def _reject(self, block: ReadBlock, why: str) -> None:
        """A reply unusable as a whole: its points go BAD (DEVICE_FAILURE), counted."""
        self.tm.inc(DriverCounter.REJECTED)
        self.rlog(logging.WARNING, f"reject:{block}", "event=bad_reply driver=%s block=%s "
                  "error=%s", self.name, block, why)
        self.port.put_bad([pp.slot for pp in block.points], Substatus.DEVICE_FAILURE)

    def _point_failed(self, pp: PlannedPoint, code: int) -> None:
        p = pp.point
        what = EXC_NAMES.get(code, f"exception {code}")
        msg = (f"unit {pp.unit} {p.table} address {p.address}: {what} (exception {code})")
        if self.point_errors.get(pp.pos) != msg:
            self.point_errors[pp.pos] = msg
            self.log.error("event=point_error driver=%s signal=%s error=%r", self.name,
                           p.signal, msg)
        sub = Substatus.CONFIG if code == EXC_ILLEGAL_ADDRESS else Substatus.DEVICE_FAILURE
        self.port.put_bad([pp.slot], sub)

    # ------------------------------------------------------------------ writes
    async def _do_writes(self) -> None:
        for slot in list(self.pending):
            pend = self.pending[slot]
            ok = True
            for pp in self.write_points[slot]:
                try:
                    await self._write_point(pp, pend.value)
                except LinkDownError:
                    raise
                except (ModbusException, _ExceptionReplyError, TimeoutError) as exc:
                    ok = False
                    pend.attempts += 1
                    if pend.attempts >= self.limits.write_attempts:
                        self.tm.inc(DriverCounter.WRITE_FAILURES)
                        self.log.error("event=write_failed driver=%s signal=%s value=%r "
                                       "attempts=%d error=%s", self.name, pp.point.signal,
                                       pend.value, pend.attempts, exc)
                        ok = True  # given up
                except Exception as exc:  # CodecError, or anything else about this value
                    self.tm.inc(DriverCounter.WRITE_FAILURES)
                    self.rlog(logging.ERROR, f"wcodec:{pp.pos}", "event=write_refused "
                              "driver=%s signal=%s value=%r error=%s", self.name,
                              pp.point.signal, pend.value, describe(exc))
            if ok and self.pending.get(slot) is pend:
                del self.pending[slot]

    async def _write_point(self, pp: PlannedPoint, value: Value) -> None:
        p = pp.point
        if p.table == "coil":
            rr = await self._request("write_coil", p.address, bool(value), device_id=pp.unit)
        elif p.bit is not None:
            cur = await self._request("read_holding_registers", p.address, count=1,
                                      device_id=pp.unit)
            _check_reply(cur)
            reg = set_bit(int(cur.registers[0]), p.bit, bool(value))
            rr = await self._request("write_register", p.address, reg, device_id=pp.unit)
        else:
            regs = encode(scale_out(value, p.scale, p.offset), p.value_type, p.order,
                          allow_nonfinite=self.port.infos[pp.slot].allow_nonfinite)
            if len(regs) == 1:
                rr = await self._request("write_register", p.address, regs[0],
                                         device_id=pp.unit)
            else:
                rr = await self._request("write_registers", p.address, regs, device_id=pp.unit)
        _check_reply(rr)
        self.tm.inc(DriverCounter.WRITES)


class _ExceptionReplyError(Exception):
    pass


def _check_reply(rr: Any) -> None:
    if rr.isError():
        code = int(getattr(rr, "exception_code", 0))
        raise _ExceptionReplyError(EXC_NAMES.get(code, f"exception {code}") + f" ({code})")
