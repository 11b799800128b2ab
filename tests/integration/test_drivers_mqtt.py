"""MQTT in (driver) and out (sink) against a real Mosquitto on 127.0.0.1."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Any

from driver_peers import Certs, Collector, Mosquitto, driver_process, wait_until

from petra.config._drivers import MqttConfig, MqttInConfig
from petra.shm import Quality, SignalDef, SignalType, Substatus
from petra.types import ConnState, DriverCounter, SinkCounter

FAST_RETRY = {"initial_delay_s": 0.1, "max_delay_s": 0.3}


def in_cfg(broker: dict[str, Any], subs: list[dict[str, Any]]) -> MqttInConfig:
    return MqttInConfig.model_validate({"kind": "mqtt", "name": "mqin", "broker": broker,
                                        "retry": FAST_RETRY, "subscriptions": subs})


def out_cfg(broker: dict[str, Any], publish: list[dict[str, Any]], **kw: Any) -> MqttConfig:
    return MqttConfig.model_validate({"broker": broker, "publish": publish,
                                      "retry": FAST_RETRY, **kw})


def publish_all(client: Any, msgs: list[tuple[str, str | bytes]], qos: int = 1) -> None:
    for topic, payload in msgs:
        client.publish(topic, payload, qos=qos).wait_for_publish(5)


def test_subscriptions_payload_forms_and_bad_payloads(mosquitto: Mosquitto,
                                                      make_segment: Any) -> None:
    seg = make_segment([
        SignalDef("t.temp", SignalType.FLOAT), SignalDef("north.level", SignalType.FLOAT),
        SignalDef("south.level", SignalType.FLOAT), SignalDef("flow", SignalType.FLOAT),
        SignalDef("run", SignalType.BOOL), SignalDef("count", SignalType.INT),
        SignalDef("flag", SignalType.BOOL), SignalDef("arr", SignalType.INT)])
    subs: list[dict[str, Any]] = [
        {"topic": "plant/temp", "signal": "t.temp"},
        {"topic": "plant/+/level", "signal": "{1}.level",
         "signals": ["north.level", "south.level"]},
        {"topic": "plant/json/flow", "signal": "flow", "format": "json",
         "json_path": "data.value"},
        {"topic": "plant/json/run", "signal": "run", "format": "json"},
        {"topic": "plant/count", "signal": "count"},
        {"topic": "plant/flag", "signal": "flag"},
        {"topic": "plant/arr/#", "signal": "arr", "format": "json", "json_path": "r.1"},
    ]
    client = mosquitto.client()
    with driver_process(in_cfg({"port": mosquitto.port}, subs), seg) as drv:
        drv.wait_state(ConnState.UP)
        # the subscription is in place once a retained-free probe arrives: retry until seen
        wait_until(lambda: (client.publish("plant/temp", "1.0", qos=1),
                            seg.read("t.temp").quality == Quality.GOOD)[1], 10, "subscribed")
        publish_all(client, [
            ("plant/temp", "21.5"), ("plant/north/level", "3.25"),
            ("plant/south/level", " 7 "), ("plant/json/flow", '{"data": {"value": 12.5}}'),
            ("plant/json/run", '{"value": true}'), ("plant/count", "42"),
            ("plant/flag", "on"), ("plant/arr/x/y", '{"r": [1, 9, 3]}')])
        expect = {"t.temp": 21.5, "north.level": 3.25, "south.level": 7.0, "flow": 12.5,
                  "run": True, "count": 42, "flag": True, "arr": 9}
        wait_until(lambda: all(seg.read(k).value == v and seg.read(k).quality == Quality.GOOD
                               for k, v in expect.items()), 10, "all payload forms")
        before = drv.counter(DriverCounter.REJECTED)
        bad: list[tuple[str, str | bytes]] = [
               ("plant/temp", "warm"), ("plant/count", "1.5"), ("plant/flag", "2"),
               ("plant/json/flow", '{"data": {}}'), ("plant/json/flow", "{not json"),
               ("plant/json/run", '"yes"'), ("plant/zzz/level", "1"),
               ("plant/count", b"\xff\xfe"), ("plant/json/run", '{"value": 5}')]
        publish_all(client, bad)
        wait_until(lambda: drv.counter(DriverCounter.REJECTED) >= before + len(bad), 10,
                   "bad payloads counted")
        assert {k: seg.read(k).value for k in expect} == expect, "bad payloads never written"
        # a number the signal cannot take is a reading all the same: BAD, value kept
        publish_all(client, [("plant/temp", "nan")])
        wait_until(lambda: seg.read("t.temp").quality == Quality.BAD, 10, "NaN marked BAD")
        assert seg.read("t.temp").substatus == Substatus.OUT_OF_RANGE
    client.loop_stop()


def test_publish_on_change_formats_deadband_and_interval(mosquitto: Mosquitto,
                                                          make_segment: Any) -> None:
    seg = make_segment([SignalDef("a.x", SignalType.FLOAT), SignalDef("b", SignalType.INT),
                        SignalDef("c", SignalType.FLOAT), SignalDef("d", SignalType.FLOAT),
                        SignalDef("e", SignalType.BOOL), SignalDef("quiet", SignalType.INT)])
    cfg = out_cfg({"port": mosquitto.port}, [
        {"signals": ["a.*"], "qos": 1, "topic": "{prefix}/{path}"},
        {"signals": "b", "format": "plain", "retain": True},
        {"signals": "c", "deadband": 1.0},
        {"signals": "d", "min_interval_s": 0.3},
        {"signals": "e", "format": "plain"},
    ], topic_prefix="site/{instance}")
    prefix = f"site/{seg.instance}"
    client = mosquitto.client()
    col = Collector(client, f"{prefix}/#")
    with driver_process(cfg, seg) as sink:
        sink.wait_state(ConnState.UP)
        wait_until(lambda: col.on_topic(f"{prefix}/status") == [b"online"], 10, "status")
        seg.write("a.x", 1.5, Quality.UNCERTAIN, source_ts_ns=123)
        seg.write("b", 7)
        for v in (10.0, 10.5, 10.9, 11.2, 11.5, 12.3):
            seg.write("c", v)
        for v in range(10):
            seg.write("d", float(v))
        seg.write("e", True)
        seg.write("quiet", 5)
        wait_until(lambda: col.on_topic(f"{prefix}/a/x"), 10, "json message")
        msg = json.loads(col.on_topic(f"{prefix}/a/x")[0])
        assert msg == {"value": 1.5, "quality": "UNCERTAIN", "substatus": "NONE", "ts": 123}
        wait_until(lambda: col.on_topic(f"{prefix}/b") == [b"7"], 10, "plain int")
        wait_until(lambda: col.on_topic(f"{prefix}/e") == [b"true"], 10, "plain bool")
        # deadband 1.0 against the last published value: 10.0, 11.2, 12.3
        wait_until(lambda: [json.loads(p)["value"] for p in col.on_topic(f"{prefix}/c")]
                   == [10.0, 11.2, 12.3], 10, "deadband")
        # minimum interval: the first value at once, the latest when the interval ends
        wait_until(lambda: [json.loads(p)["value"] for p in col.on_topic(f"{prefix}/d")]
                   [-1:] == [9.0], 10, "trailing value after the interval")
        d_values = [json.loads(p)["value"] for p in col.on_topic(f"{prefix}/d")]
        assert d_values[0] == 0.0 and len(d_values) <= 3, d_values
        assert not col.on_topic(f"{prefix}/quiet"), "signals without a rule are not published"
    wait_until(lambda: col.on_topic(f"{prefix}/status")[-1:] == [b"offline"], 10,
               "offline status on a clean stop")
    # retained: a new subscriber sees the last plain value and the status
    late = mosquitto.client()
    late_col = Collector(late, f"{prefix}/#")
    wait_until(lambda: late_col.on_topic(f"{prefix}/b") == [b"7"], 10, "retained value")
    client.loop_stop()
    late.loop_stop()


def test_batched_payloads(mosquitto: Mosquitto, make_segment: Any) -> None:
    n = 50
    seg = make_segment([SignalDef(f"s{i}", SignalType.FLOAT) for i in range(n)])
    cfg = out_cfg({"port": mosquitto.port}, [{"signals": ["s*"], "batch": True}],
                  batch={"max_changes": 64, "max_delay_s": 0.05})
    client = mosquitto.client()
    col = Collector(client, f"petra/{seg.instance}/batch")
    with driver_process(cfg, seg) as sink:
        sink.wait_state(ConnState.UP)
        for rnd in range(4):
            for i in range(n):
                seg.write(f"s{i}", float(rnd * 1000 + i))

        def entries() -> list[dict[str, Any]]:
            return [e for p in col.on_topic(f"petra/{seg.instance}/batch")
                    for e in json.loads(p)]
        wait_until(lambda: len(entries()) >= 4 * n, 10, "all batched changes")
        got = entries()
        assert len(got) == 4 * n
        assert {(e["signal"], e["value"]) for e in got} == {
            (f"s{i}", float(r * 1000 + i)) for r in range(4) for i in range(n)}
        assert len(col.on_topic(f"petra/{seg.instance}/batch")) < 4 * n
    client.loop_stop()


def test_commands_set_get_and_refusals(mosquitto: Mosquitto, make_segment: Any) -> None:
    seg = make_segment([SignalDef("sp", SignalType.FLOAT, writable=True),
                        SignalDef("pv", SignalType.FLOAT, initial=3.5)])
    cfg = out_cfg({"port": mosquitto.port}, [], commands={"roles": {"*": "operator"}})
    client = mosquitto.client()
    cmd = f"petra/{seg.instance}/cmd"
    col = Collector(client, f"{cmd}/#")

    me = f"{cmd}/reply/me"

    def ask(req: dict[str, Any]) -> dict[str, Any]:
        req = {**req, "id": uuid.uuid4().hex, "reply_to": me}
        client.publish(cmd, json.dumps(req), qos=1).wait_for_publish(5)

        def answered() -> dict[str, Any] | None:
            for p in col.on_topic(me):
                r = json.loads(p)
                if r.get("id") == req["id"]:
                    return dict(r)
            return None
        return dict(wait_until(answered, 10, f"reply to {req['op']}"))

    with driver_process(cfg, seg) as sink:
        sink.wait_state(ConnState.UP)
        r = wait_until(lambda: _try(ask, {"op": "set", "signal": "sp", "value": 42}), 15,
                       "command topic subscribed")
        assert r["ok"] and r["value"] == 42.0
        assert seg.read("sp").value == 42.0
        r = ask({"op": "get", "signal": "pv"})
        assert r["ok"] and r["value"] == 3.5 and r["quality"] == "UNCERTAIN"
        r = ask({"op": "get_all"})
        assert not r["ok"] and "not allowed" in r["error"], "get_all is off by default"
        r = ask({"op": "set", "signal": "pv", "value": 1})
        assert not r["ok"] and "not writable" in r["error"]
        assert seg.read("pv").value == 3.5
        r = ask({"op": "set", "signal": "nope", "value": 1})
        assert not r["ok"] and "no signal" in r["error"]
        r = ask({"op": "set", "signal": "sp", "value": "high"})
        assert not r["ok"]
        r = ask({"op": "reboot"})
        assert not r["ok"] and "unknown op" in r["error"]
        default_reply = f"petra/{seg.instance}/cmd/reply"
        wait_until(lambda: (client.publish(cmd, b"{oops", qos=1),
                            any("JSON" in json.loads(p)["error"]
                                for p in col.on_topic(default_reply)))[1],
                   10, "reply on the default reply topic")
        wait_until(lambda: sink.counter(SinkCounter.REJECTED) >= 4, 5, "refusals counted")
    client.loop_stop()


def test_a_retained_command_is_not_acted_on(mosquitto: Mosquitto, make_segment: Any) -> None:
    """A command left retained on the broker comes again on every subscribe: the sink
    must not repeat it after each reconnect (it counts it as refused, unanswered)."""
    seg = make_segment([SignalDef("sp", SignalType.FLOAT, writable=True, initial=1.0)])
    cfg = out_cfg({"port": mosquitto.port}, [], commands={"roles": {"*": "operator"}})
    client = mosquitto.client()
    cmd = f"petra/{seg.instance}/cmd"
    col = Collector(client, f"{cmd}/reply/#")
    stale = {"op": "set", "signal": "sp", "value": 99, "id": "stale"}
    client.publish(cmd, json.dumps(stale), qos=1, retain=True).wait_for_publish(5)
    try:
        with driver_process(cfg, seg) as sink:
            sink.wait_state(ConnState.UP)
            wait_until(lambda: sink.counter(SinkCounter.REJECTED) >= 1, 15,
                       "the retained command seen and refused")
            assert seg.read("sp").value == 1.0
            fresh = {"op": "set", "signal": "sp", "value": 7, "id": "fresh"}
            client.publish(cmd, json.dumps(fresh), qos=1).wait_for_publish(5)
            wait_until(lambda: seg.read("sp").value == 7.0, 10, "a live command applied")
            assert not any(json.loads(p).get("id") == "stale"
                           for p in col.on_topic(f"{cmd}/reply")), "stale one answered"
    finally:
        client.publish(cmd, b"", qos=1, retain=True).wait_for_publish(5)  # clear it
        client.loop_stop()


def _try(fn: Any, arg: Any) -> Any:
    try:
        return fn(arg)
    except AssertionError:
        return None


def test_broker_restart_offline_queue_and_no_lost_qos1(tmp_path: Path,
                                                        make_segment: Any) -> None:
    broker = Mosquitto(persist=True)
    broker.start()
    seg = make_segment([SignalDef("q.x", SignalType.INT)])
    cfg = out_cfg({"port": broker.port}, [{"signals": "q.x", "qos": 1, "format": "plain"}],
                  max_inflight=100)
    topic = f"petra/{seg.instance}/q.x"
    collector_id = f"col-{uuid.uuid4().hex[:8]}"
    client = broker.client(collector_id, clean=False)
    col = Collector(client, topic, qos=1)

    def got() -> set[int]:
        return {int(p) for p in col.on_topic(topic)}

    try:
        with driver_process(cfg, seg) as sink:
            sink.wait_state(ConnState.UP)
            for v in range(3000):
                seg.write("q.x", v)
            wait_until(lambda: got() >= set(range(3000)), 20, "first 3000 QoS 1 messages")
            broker.stop()
            wait_until(lambda: sink.counter(SinkCounter.STATE) != ConnState.UP, 10, "down")
            for v in range(3000, 3200):
                seg.write("q.x", v)
            wait_until(lambda: sink.counter(SinkCounter.QUEUED) >= 200, 10, "queued offline")
            broker.start()
            sink.wait_state(ConnState.UP)
            wait_until(lambda: got() >= set(range(3200)), 20, "queued messages delivered")
            assert sink.counter(SinkCounter.DROPPED) == 0
            wait_until(lambda: sink.counter(SinkCounter.RECONNECTS) >= 1, 5, "reconnect")
    finally:
        client.loop_stop()
        broker.remove()


def test_offline_queue_is_bounded_and_reports_drops(mosquitto: Mosquitto,
                                                    make_segment: Any) -> None:
    seg = make_segment([SignalDef("v", SignalType.INT)])
    cfg = out_cfg({"port": mosquitto.port}, [{"signals": "v", "qos": 1, "format": "plain"}],
                  offline_queue=10)
    with driver_process(cfg, seg) as sink:
        sink.wait_state(ConnState.UP)
        mosquitto.stop()
        wait_until(lambda: sink.counter(SinkCounter.STATE) != ConnState.UP, 10, "down")
        for v in range(30):
            seg.write("v", v)
        wait_until(lambda: sink.counter(SinkCounter.DROPPED) == 20, 10, "20 dropped")
        mosquitto.start()
        client = mosquitto.client()
        col = Collector(client, f"petra/{seg.instance}/v")
        sink.wait_state(ConnState.UP)
        seg.write("v", 99)
        wait_until(lambda: b"99" in col.on_topic(f"petra/{seg.instance}/v"), 10, "after")
        client.loop_stop()


def test_password_auth(tmp_path: Path, make_segment: Any) -> None:
    broker = Mosquitto(users={"petra": "s3cret-pw"})
    broker.start()
    pw = tmp_path / "pw"
    pw.write_text("s3cret-pw\n")
    seg = make_segment([SignalDef("x", SignalType.FLOAT), SignalDef("y", SignalType.FLOAT)])
    try:
        good = {"port": broker.port, "username": "petra", "password_file": str(pw)}
        client = broker.client()
        col = Collector(client, f"petra/{seg.instance}/#")
        with driver_process(out_cfg(good, [{"signals": "x"}]), seg) as sink:
            sink.wait_state(ConnState.UP)
            seg.write("x", 2.5)
            wait_until(lambda: col.on_topic(f"petra/{seg.instance}/x"), 10, "authed publish")
        wrong = tmp_path / "wrong"
        wrong.write_text("nope")
        bad = {"port": broker.port, "username": "petra", "password_file": str(wrong)}
        with driver_process(out_cfg(bad, [{"signals": "x"}]), seg) as sink:
            wait_until(lambda: sink.counter(SinkCounter.ERRORS) >= 2, 10, "refused and retried")
            assert sink.counter(SinkCounter.STATE) != ConnState.UP
        # MQTT in with the password from the environment
        import os
        os.environ["PETRA_TEST_MQTT_PW"] = "s3cret-pw"
        cfg_in = in_cfg({"port": broker.port, "username": "petra",
                         "password_env": "PETRA_TEST_MQTT_PW"},
                        [{"topic": "in/y", "signal": "y"}])
        with driver_process(cfg_in, seg) as drv:
            drv.wait_state(ConnState.UP)
            wait_until(lambda: (client.publish("in/y", "4.5", qos=1),
                                seg.read("y").value == 4.5)[1], 10, "authed subscribe")
        client.loop_stop()
    finally:
        broker.remove()


def test_tls_with_client_certificate(tmp_path: Path, certs: Certs, make_segment: Any) -> None:
    broker = Mosquitto(certs=certs, require_client_cert=True)
    broker.start()
    seg = make_segment([SignalDef("x", SignalType.FLOAT), SignalDef("y", SignalType.FLOAT)])
    tls = {"ca_file": str(certs.ca), "cert_file": str(certs.client_cert),
           "key_file": str(certs.client_key)}
    try:
        client = broker.client()
        col = Collector(client, f"petra/{seg.instance}/#")
        with driver_process(out_cfg({"port": broker.port, "tls": tls}, [{"signals": "x"}]),
                            seg) as sink:
            sink.wait_state(ConnState.UP)
            seg.write("x", 1.25)
            wait_until(lambda: col.on_topic(f"petra/{seg.instance}/x"), 10, "TLS publish")
        cfg_in = in_cfg({"port": broker.port, "tls": tls}, [{"topic": "in/y", "signal": "y"}])
        with driver_process(cfg_in, seg) as drv:
            drv.wait_state(ConnState.UP)
            wait_until(lambda: (client.publish("in/y", "8.5", qos=1),
                                seg.read("y").value == 8.5)[1], 10, "TLS subscribe")
        # without the client certificate the broker refuses
        no_cert = {"port": broker.port, "tls": {"ca_file": str(certs.ca)}}
        with driver_process(out_cfg(no_cert, [{"signals": "x"}]), seg) as sink:
            wait_until(lambda: sink.counter(SinkCounter.ERRORS) >= 2, 10, "refused")
        client.loop_stop()
    finally:
        broker.remove()



def test_a_lapped_sink_republishes_current_values_from_the_slots(
        mosquitto: Mosquitto, make_segment: Any) -> None:
    """Entries lost to a lapped journal are counted, and the sink catches up from the
    slots: the broker ends with every signal's current value, even one whose only
    change was among the lost entries."""
    import os
    import signal

    seg = make_segment([SignalDef("a", SignalType.FLOAT), SignalDef("b", SignalType.INT)],
                       journal_capacity=64)
    cfg = out_cfg({"port": mosquitto.port}, [{"signals": ["a", "b"], "format": "plain"}],
                  topic_prefix="lap/{instance}")
    prefix = f"lap/{seg.instance}"
    client = mosquitto.client()
    col = Collector(client, f"{prefix}/#")
    with driver_process(cfg, seg) as sink:
        sink.wait_state(ConnState.UP)
        wait_until(lambda: col.on_topic(f"{prefix}/status") == [b"online"], 10, "status")
        pid = sink.proc.pid
        assert pid is not None
        os.kill(pid, signal.SIGSTOP)  # the sink cannot read while the ring laps it
        try:
            seg.write("b", 7)
            for v in range(5000):
                seg.write("a", float(v))
        finally:
            os.kill(pid, signal.SIGCONT)
        wait_until(lambda: col.on_topic(f"{prefix}/b") == [b"7"], 10, "b from the resync")
        wait_until(lambda: [float(p) for p in col.on_topic(f"{prefix}/a")][-1:] == [4999.0],
                   10, "a's current value")
        assert len(col.on_topic(f"{prefix}/a")) < 100  # caught up, not replayed
        wait_until(lambda: sink.counter(SinkCounter.DROPPED) > 0, 5, "the loss counted")
    client.loop_stop()


def test_a_value_is_not_published_twice_around_a_connect(mosquitto: Mosquitto,
                                                         make_segment: Any) -> None:
    """The sink follows the journal before its first connect; the connect's snapshot
    does not send that value again. After a reconnect only a retained rule is
    published again (a broker without persistence lost its retained copy)."""
    seg = make_segment([SignalDef("kept", SignalType.INT), SignalDef("live", SignalType.INT),
                        SignalDef("never", SignalType.INT)])
    cfg = out_cfg({"port": mosquitto.port},
                  [{"signals": "kept", "qos": 1, "format": "plain", "retain": True},
                   {"signals": ["live", "never"], "qos": 1, "format": "plain"}])
    mosquitto.stop()
    with driver_process(cfg, seg) as sink:
        wait_until(lambda: sink.counter(SinkCounter.ERRORS) + sink.counter(
            SinkCounter.RECONNECTS) >= 1, 10, "a refused connect")
        seg.write("kept", 5)  # journalled while the broker is away: queued
        wait_until(lambda: sink.counter(SinkCounter.QUEUED) == 1, 10, "the queued value")
        mosquitto.start()
        sink.wait_state(ConnState.UP)
        wait_until(lambda: sink.counter(SinkCounter.QUEUED) == 0, 10, "the queue sent")
        seg.write("live", 7)
        wait_until(lambda: sink.counter(SinkCounter.PUBLISHED) >= 2, 10, "live published")
        time.sleep(1.0)  # several heartbeats: the counters are final
        assert sink.counter(SinkCounter.PUBLISHED) == 2  # kept once, live once
        reconnects = sink.counter(SinkCounter.RECONNECTS)

        mosquitto.stop()  # no persistence: the retained "kept" is gone with it
        wait_until(lambda: sink.counter(SinkCounter.STATE) != ConnState.UP, 10, "down")
        mosquitto.start()
        wait_until(lambda: sink.counter(SinkCounter.RECONNECTS) > reconnects
                   and sink.counter(SinkCounter.STATE) == ConnState.UP, 20, "reconnected")
        client = mosquitto.client()
        col = Collector(client, f"petra/{seg.instance}/kept")
        wait_until(lambda: col.on_topic(f"petra/{seg.instance}/kept") == [b"5"], 10,
                   "the retained value republished")
        time.sleep(1.0)
        assert sink.counter(SinkCounter.PUBLISHED) == 3  # kept again, live not
        client.loop_stop()
