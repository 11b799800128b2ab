"""What hostile MQTT input costs, and how long it delays the next valid message.

    python bench/hostile.py --json out.json [--reps 5] [--flood 2000]

Measured (medians over ``--reps``):

- ``handler_us``: in this process, the time one MQTT-in handler call takes for each
  attack of issue 11 (and a valid payload for reference): bounded parsing means a
  refusal costs about what a valid message does, whatever its size or nesting.
- ``command_us``: the same for the command handler (``handle_command``).
- ``next_valid_ms``: end to end against Mosquitto and an MQTT-in driver process: a
  hostile message, 100 ms later a valid one; the time from publishing the valid one to
  its value in the segment (issue 11's acceptance: within 1 s). ``baseline`` is a valid
  message after a valid one.
- ``flood``: ``--flood`` messages of one attack at QoS 0 as fast as the publisher goes:
  how many the driver counted (REJECTED), the driver's CPU seconds per message, and
  the delay of a valid message sent right after the flood.

The publisher, the broker and the driver share the machine's cores; on a 2-core VM
the publisher is often the bottleneck of the flood figures.
"""

from __future__ import annotations

import argparse
import sys
import time
import uuid
from functools import partial
from pathlib import Path
from typing import Any

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine_info, median, print_table, write_json
from drivers import _Broker, _counters, _Proc, _wait

from petra.config._drivers import MqttInConfig
from petra.drivers.mqtt_in import MqttInDriver
from petra.shm import Segment, SignalDef, SignalType
from petra.sinks._mqtt_commands import handle_command
from petra.types import DriverCounter

SCHEMA = 1
ATTACKS: dict[str, tuple[str, bytes]] = {
    "valid (reference)": ("p/f", b"21.5"),
    "1 and 400 zeros": ("p/f", b"1" + b"0" * 400),
    "5000-digit JSON int": ("p/j", b"1" * 5000),
    "[ x 100000": ("p/j", b"[" * 100_000),
    "[ x 60000 (under 64 KiB)": ("p/j", b"[" * 60_000),
    "JSON 1e400": ("p/j", b'{"value": 1e400}'),
    "1 MB of digits": ("p/f", b"7" * 1_000_000),
}
COMMANDS: dict[str, bytes] = {
    "valid set": b'{"op": "set", "signal": "sp", "value": 2.5}',
    "value 10^400": b'{"op": "set", "signal": "sp", "value": 1' + b"0" * 400 + b"}",
    "value NaN": b'{"op": "set", "signal": "sp", "value": NaN}',
    "value 1e9 (max 5)": b'{"op": "set", "signal": "sp", "value": 1e9}',
    "[ x 100000": b"[" * 100_000,
}
SUBS = [{"topic": "p/f", "signal": "f"}, {"topic": "p/j", "signal": "j", "format": "json"}]


def _segment() -> Segment:
    return Segment.create(f"bh{uuid.uuid4().hex[:10]}", [
        SignalDef("f", SignalType.FLOAT), SignalDef("j", SignalType.FLOAT),
        SignalDef("sp", SignalType.FLOAT, writable=True, minimum=0, maximum=5)])


def _time_us(fn: Any, n: int) -> float:
    t0 = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - t0) / n * 1e6


def bench_handlers(reps: int) -> tuple[dict[str, float], dict[str, float]]:
    seg = _segment()
    try:
        cfg = MqttInConfig.model_validate({"kind": "mqtt", "name": "bh", "broker": {"port": 1},
                                           "subscriptions": SUBS})
        drv = MqttInDriver(cfg, seg)
        handler: dict[str, float] = {}
        for name, (topic, payload) in ATTACKS.items():
            i = 0 if topic == "p/f" else 1
            n = 20 if len(payload) > 50_000 else 2000
            handler[name] = median(_time_us(partial(drv.on_payload, i, topic, payload), n)
                                   for _ in range(reps))
        command: dict[str, float] = {}
        for name, payload in COMMANDS.items():
            command[name] = median(_time_us(partial(handle_command, seg, payload, "r"), 200)
                                   for _ in range(reps))
        return handler, command
    finally:
        seg.unlink()
        seg.close()


def _holds(seg: Segment, value: float) -> bool:
    return bool(seg.get("f") == value)


def _counted(seg: Segment, role: str, total: int) -> bool:
    return _counters(seg, role)[DriverCounter.REJECTED] >= total


def _client(port: int) -> Any:
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"bh-{uuid.uuid4().hex[:6]}")
    c.connect("127.0.0.1", port)
    c.loop_start()
    return c


def bench_e2e(reps: int, flood: int) -> dict[str, Any]:
    broker = _Broker()
    seg = _segment()
    role = "driver:bh"
    cfg = MqttInConfig.model_validate({"kind": "mqtt", "name": "bh", "subscriptions": SUBS,
                                       "broker": {"port": broker.port}})
    proc = _Proc(cfg, seg)
    client = _client(broker.port)
    out: dict[str, Any] = {"next_valid_ms": {}, "flood": {}}
    try:
        _wait(lambda: (client.publish("p/f", "0.5", qos=1), seg.get("f") == 0.5)[1], 15,
              "driver subscribed")
        cpu = psutil.Process(proc.p.pid)
        k = 0
        for name, (topic, payload) in ATTACKS.items():
            delays = []
            for _ in range(reps):
                client.publish(topic, payload, qos=1).wait_for_publish(10)
                time.sleep(0.1)
                k += 1
                value = float(k)
                t0 = time.perf_counter()
                client.publish("p/f", repr(value), qos=1)
                _wait(partial(_holds, seg, value), 5, name)
                delays.append((time.perf_counter() - t0) * 1e3)
            out["next_valid_ms"][name] = {"median": median(delays), "max": max(delays)}
        for name in ("1 and 400 zeros", "5000-digit JSON int", "[ x 60000 (under 64 KiB)"):
            topic, payload = ATTACKS[name]
            rej0 = _counters(seg, role)[DriverCounter.REJECTED]
            c0 = sum(cpu.cpu_times()[:2])
            t0 = time.perf_counter()
            for _ in range(flood):
                client.publish(topic, payload, qos=0)
            k += 1
            value = float(k)
            client.publish("p/f", repr(value), qos=1).wait_for_publish(60)
            t_pub = time.perf_counter()
            _wait(partial(_holds, seg, value), 60, "valid after flood")
            t_valid = time.perf_counter()
            _wait(partial(_counted, seg, role, rej0 + flood), 10, "flood counted")
            counted = _counters(seg, role)[DriverCounter.REJECTED] - rej0
            cpu_s = sum(cpu.cpu_times()[:2]) - c0
            out["flood"][name] = {"sent": flood, "counted": counted,
                                  "driver_cpu_us_per_msg": cpu_s / flood * 1e6,
                                  "publish_s": t_pub - t0,
                                  "valid_after_flood_ms": (t_valid - t_pub) * 1e3}
        out["reconnects"] = _counters(seg, role)[DriverCounter.RECONNECTS]
    finally:
        client.loop_stop()
        proc.stop()
        seg.unlink()
        seg.close()
        broker.close()
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--json", help="write the results here")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--flood", type=int, default=2000)
    args = ap.parse_args()
    handler, command = bench_handlers(args.reps)
    e2e = bench_e2e(args.reps, args.flood)
    print_table([(k, v, e2e["next_valid_ms"][k]["median"], e2e["next_valid_ms"][k]["max"])
                 for k, v in handler.items()],
                ["MQTT-in payload", "handler us", "next valid ms (median)", "max ms"])
    print()
    print_table(list(command.items()), ["command", "handler us"])
    print()
    print_table([(k, f["sent"], f["counted"], f["driver_cpu_us_per_msg"],
                  f["valid_after_flood_ms"]) for k, f in e2e["flood"].items()],
                ["flood (QoS 0)", "sent", "counted", "driver cpu us/msg",
                 "next valid ms"])
    print(f"\nreconnects during the run: {e2e['reconnects']}")
    if args.json:
        write_json(args.json, {"schema": SCHEMA, "machine": machine_info(), "reps": args.reps,
                               "handler_us": handler, "command_us": command, **e2e})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
