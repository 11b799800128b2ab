"""Pure-Python reference model of every built-in block: the test oracle of the C kernel.

It runs the same instruction array over the same image, state and params layout as
``petra_blocks_run`` (csrc/blocks.c) and evaluates every floating-point expression in
the same order, so results agree bit for bit (NaN payloads aside). It is slow and
never used on the scan; tests compare it with the kernel on random input sequences.

Python's ``float`` is an IEEE double like C's ``double``; ``math.sin``, ``math.fmod``
and ``math.floor`` call the same libm. Where Python would raise (``x / 0.0``) the
kernel's guards come first, as in C.
"""

# The model mirrors csrc/blocks.c statement by statement, so these rules do not fit it:
# PLR0124 (x != x is the NaN test C uses), PLR1730 (min()/max() would hide the C `if`
# that is being mirrored), PLR0912/PLR0915 (one branch per op, as in the C switch).
# ruff: noqa: PLR0124, PLR1730, PLR0912, PLR0915

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt

from petra import _core
from petra.blocks._builtins import KERNELS
from petra.types import Quality

Q_BAD, Q_UNCERTAIN, Q_GOOD = int(Quality.BAD), int(Quality.UNCERTAIN), int(Quality.GOOD)
CMAX, CMIN = 2147483647.0, -2147483648.0
TWO_PI = 6.283185307179586
TWO_POW_53 = 9007199254740992.0
MASK64 = (1 << 64) - 1

OP = {name: _core.op_code(k.op_name) for name, k in KERNELS.items()}


def _b(x: bool) -> float:
    return 1.0 if x else 0.0


def _qf(v: float, q: int) -> int:
    return q if math.isfinite(v) else Q_BAD


def _as_count(x: float) -> float:
    if x != x:
        return 0.0
    if x < CMIN:
        return CMIN
    if x > CMAX:
        return CMAX
    return math.copysign(float(math.trunc(x)), x)


def _mix64(z: int) -> int:
    z = (z + 0x9E3779B97F4A7C15) & MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
    return z ^ (z >> 31)


class _Ctx:
    """One instruction's view of the image, state and params during a run."""

    __slots__ = ("dt", "first", "img", "ins", "n_in", "outs", "p", "q", "s", "so")

    def __init__(self, img: list[float], q: list[int], s: list[float]) -> None:
        self.img, self.q, self.s = img, q, s
        self.ins: list[int] = []
        self.outs: list[int] = []
        self.n_in = 0
        self.so = 0
        self.p: list[float] = []
        self.dt = 0.0
        self.first = False

    def v(self, k: int) -> float:
        return self.img[self.ins[k]]

    def qi(self, k: int) -> int:
        return self.q[self.ins[k]]

    def qall(self) -> int:
        return min((self.qi(k) for k in range(self.n_in)), default=Q_GOOD)

    def put(self, k: int, v: float, q: int) -> None:
        self.img[self.outs[k]] = v
        self.q[self.outs[k]] = q

    def st(self, k: int) -> float:
        return self.s[self.so + k]

    def set(self, k: int, v: float) -> None:
        self.s[self.so + k] = v


def _logic(c: _Ctx, op: int) -> None:
    acc = op == OP["AND"]
    for k in range(c.n_in):
        x = c.v(k) != 0.0
        if op == OP["AND"]:
            acc = acc and x
        elif op == OP["OR"]:
            acc = acc or x
        else:
            acc = acc != x
    c.put(0, _b(acc), c.qall())


def _compare(c: _Ctx, op: int) -> None:
    a, b = c.v(0), c.v(1)
    if op == OP["GT"]:
        r = a > b
    elif op == OP["GE"]:
        r = a >= b
    elif op == OP["LT"]:
        r = a < b
    elif op == OP["LE"]:
        r = a <= b
    else:
        r = a == b or abs(a - b) <= c.p[0]
        if op == OP["NE"]:
            r = not r
    c.put(0, _b(r), min(c.qi(0), c.qi(1)))


def _arith(c: _Ctx, op: int) -> None:
    if op == OP["SUB"]:
        r = c.v(0) - c.v(1)
        c.put(0, r, _qf(r, min(c.qi(0), c.qi(1))))
        return
    if op == OP["DIV"]:
        a, b = c.v(0), c.v(1)
        if b == 0.0:
            c.q[c.outs[0]] = Q_BAD
        else:
            r = a / b
            c.put(0, r, _qf(r, min(c.qi(0), c.qi(1))))
        return
    r = c.v(0)
    for k in range(1, c.n_in):
        r = r + c.v(k) if op == OP["ADD"] else r * c.v(k)
    c.put(0, r, _qf(r, c.qall()))


def _select(c: _Ctx, op: int) -> None:
    if op in (OP["MIN"], OP["MAX"]):
        r = c.v(0)
        for k in range(1, c.n_in):
            x = c.v(k)
            if x != x or (x < r if op == OP["MIN"] else x > r):
                r = x
        c.put(0, r, c.qall())
    elif op == OP["ABS"]:
        c.put(0, abs(c.v(0)), c.qi(0))
    elif op == OP["LIMIT"]:
        mn, mx, r = c.v(0), c.v(2), c.v(1)
        if r < mn:
            r = mn
        if r > mx:
            r = mx
        c.put(0, r, c.qall())
    elif op == OP["SCALE"]:
        p = c.p
        r = p[2] + (c.v(0) - p[0]) * (p[3] - p[2]) / (p[1] - p[0])
        if p[4] != 0.0:
            lo = p[2] if p[2] < p[3] else p[3]
            hi = p[3] if p[2] < p[3] else p[2]
            if r < lo:
                r = lo
            if r > hi:
                r = hi
        c.put(0, r, _qf(r, c.qi(0)))
    elif op == OP["SEL"]:
        k = 2 if c.v(0) != 0.0 else 1
        c.put(0, c.v(k), min(c.qi(0), c.qi(k)))
    elif op == OP["MUX"]:
        nk = c.n_in - 1
        kv = c.v(nk)
        if 1.0 <= kv <= float(nk):
            idx = int(kv) - 1
            c.put(0, c.v(idx), min(c.qi(nk), c.qi(idx)))
        else:
            c.q[c.outs[0]] = Q_BAD
    else:  # MOVE
        c.put(0, c.v(0), c.qi(0))


def _edge_latch(c: _Ctx, op: int) -> None:
    if op in (OP["R_TRIG"], OP["F_TRIG"]):
        clk = c.v(0) != 0.0
        if c.first:
            c.set(0, 0.0)
        m = c.st(0) != 0.0
        r = (clk and not m) if op == OP["R_TRIG"] else (not clk and m)
        c.set(0, _b(clk))
        c.put(0, _b(r), c.qi(0))
        return
    st, rs = c.v(0) != 0.0, c.v(1) != 0.0
    if c.first:
        c.set(0, 0.0)
    q1 = c.st(0) != 0.0
    r = (st or (not rs and q1)) if op == OP["SR"] else (not rs and (st or q1))
    c.set(0, _b(r))
    c.put(0, _b(r), min(c.qi(0), c.qi(1)))


def _timer(c: _Ctx, op: int) -> None:
    inp = c.v(0) != 0.0
    pt = c.v(1) * 1e9
    if not pt > 0.0:
        pt = 0.0
    if c.first:
        c.set(0, 0.0)
        c.set(1, 0.0)
        c.set(2, 0.0)
    prev = c.st(0) != 0.0
    et = c.st(1)
    dt = c.dt
    if op == OP["TON"]:
        if inp:
            et = et + dt if prev else 0.0
            if et > pt:
                et = pt
            q = et >= pt
        else:
            et = 0.0
            q = False
    elif op == OP["TOF"]:
        running = c.st(2) != 0.0
        if inp:
            et, running, q = 0.0, False, True
        else:
            if prev:
                running, et = True, 0.0
            elif running:
                et = et + dt
            if running and et >= pt:
                et, running, q = pt, False, False
            else:
                q = running
        c.set(2, _b(running))
    else:
        running = c.st(2) != 0.0
        if running:
            et = et + dt
        elif inp and not prev:
            running, et = True, 0.0
        if running and et >= pt:
            et, running = pt, False
        if not running and not inp:
            et = 0.0
        q = running
        c.set(2, _b(running))
    c.set(0, _b(inp))
    c.set(1, et)
    qq = min(c.qi(0), c.qi(1))
    c.put(0, _b(q), qq)
    c.put(1, et / 1e9, qq)


def _counter(c: _Ctx, op: int) -> None:
    if op == OP["CTUD"]:
        cu, cd, r, ld = (c.v(k) != 0.0 for k in range(4))
        pv = c.v(4)
        if c.first:
            for k in range(3):
                c.set(k, 0.0)
        cue, cde = cu and c.st(0) == 0.0, cd and c.st(1) == 0.0
        cv = c.st(2)
        if r:
            cv = 0.0
        elif ld:
            cv = _as_count(pv)
        elif not (cue and cde):
            if cue and cv < CMAX:
                cv = cv + 1.0
            elif cde and cv > CMIN:
                cv = cv - 1.0
        c.set(0, _b(cu))
        c.set(1, _b(cd))
        c.set(2, cv)
        qq = c.qall()
        c.put(0, _b(cv >= pv), qq)
        c.put(1, _b(cv <= 0.0), qq)
        c.put(2, cv, qq)
        return
    clk, rl, pv = c.v(0) != 0.0, c.v(1) != 0.0, c.v(2)
    if c.first:
        c.set(0, 0.0)
        c.set(1, 0.0)
    edge = clk and c.st(0) == 0.0
    cv = c.st(1)
    if op == OP["CTU"]:
        if rl:
            cv = 0.0
        elif edge and cv < CMAX:
            cv = cv + 1.0
        q = cv >= pv
    else:
        if rl:
            cv = _as_count(pv)
        elif edge and cv > CMIN:
            cv = cv - 1.0
        q = cv <= 0.0
    c.set(0, _b(clk))
    c.set(1, cv)
    qq = c.qall()
    c.put(0, _b(q), qq)
    c.put(1, cv, qq)


def _pid(c: _Ctx, op: int) -> None:
    kp, ti, td, lo, hi = c.p[0], c.p[1], c.p[2], c.p[3], c.p[4]
    direct = c.p[5] != 0.0
    sp, pv, mo = c.v(0), c.v(1), c.v(3)
    man = c.v(2) != 0.0
    e = pv - sp if direct else sp - pv
    dts = c.dt / 1e9
    if c.first:
        c.set(0, 0.0)
        c.set(1, pv)
    if man:
        u = mo
        if u > hi:
            u = hi
        if u < lo:
            u = lo
        q = min(c.qi(2), c.qi(3))
        if math.isfinite(u):
            c.set(0, u - kp * e)
            c.set(1, pv)
        else:
            q = Q_BAD
        c.put(0, u, q)
        return
    q = min(c.qi(0), c.qi(1), c.qi(2))
    if q == Q_BAD:
        c.q[c.outs[0]] = Q_BAD
        return
    dterm = 0.0
    if dts > 0.0 and not c.first:
        dpv = pv - c.st(1)
        de = dpv if direct else -dpv
        dterm = kp * td * de / dts
    i0 = c.st(0)
    inew = i0 + kp * dts / ti * e
    u = kp * e + inew + dterm
    if u > hi:
        u = hi
        if inew > i0:
            inew = i0
    elif u < lo:
        u = lo
        if inew < i0:
            inew = i0
    if not (math.isfinite(u) and math.isfinite(inew)):
        c.q[c.outs[0]] = Q_BAD
        return
    c.set(0, inew)
    c.set(1, pv)
    c.put(0, u, q)


def _filters(c: _Ctx, op: int) -> None:
    x = c.v(0)
    if op == OP["RAMP"]:
        up, dn = c.p[0] * (c.dt / 1e9), c.p[1] * (c.dt / 1e9)
        if c.first:
            y = x
        else:
            d = x - c.st(0)
            if d > up:
                y = c.st(0) + up
            elif d < -dn:
                y = c.st(0) - dn
            else:
                y = x
        if math.isfinite(y):
            c.set(0, y)
        c.put(0, y, _qf(y, c.qi(0)))
    elif op == OP["HYSTERESIS"]:
        if c.first:
            c.set(0, 0.0)
        if x > c.p[0]:
            c.set(0, 1.0)
        elif x < c.p[1]:
            c.set(0, 0.0)
        c.put(0, c.st(0), c.qi(0))
    elif op == OP["LAG"]:
        den = c.p[0] + c.dt / 1e9
        a = (c.dt / 1e9) / den if den > 0.0 else 1.0
        y = x if c.first else c.st(0) + (x - c.st(0)) * a
        if math.isfinite(y):
            c.set(0, y)
        c.put(0, y, _qf(y, c.qi(0)))
    else:  # AVERAGE
        n = int(c.p[0])
        if c.first:
            c.set(0, 0.0)
            c.set(1, 0.0)
        pos, count = int(c.st(1)), int(c.st(0))
        c.set(2 + pos, x)
        c.set(2 + n + pos, float(c.qi(0)))
        pos = 0 if pos + 1 == n else pos + 1
        count = min(count + 1, n)
        c.set(0, float(count))
        c.set(1, float(pos))
        total, q = 0.0, Q_GOOD
        for i in range(count):
            total = total + c.st(2 + i)
            q = min(q, int(c.st(2 + n + i)))
        y = total / float(count)
        c.put(0, y, _qf(y, q))


def _sources(c: _Ctx, op: int) -> None:
    p = c.p
    if op == OP["SIGNAL_GENERATOR"]:
        wf, amp, off, per = int(p[0]), p[1], p[2], p[3] * 1e9
        t = 0.0 if c.first else c.st(0) + c.dt
        c.set(0, t)
        ph = math.fmod(t, per) / per
        if wf == 0:
            y = off + amp * math.sin(TWO_PI * ph)
        elif wf == 1:
            y = off + amp if ph < 0.5 else off - amp
        elif wf == 2:
            y = off + amp * ph
        else:
            k = int(math.fmod(math.floor(t / per), TWO_POW_53))
            u = float(_mix64((int(p[4]) + k) & MASK64) >> 11) / TWO_POW_53
            y = off + amp * (2.0 * u - 1.0)
        c.put(0, y, _qf(y, Q_GOOD))
    elif op == OP["TANK"]:
        area, lmax, init, drain = p[0], p[1], p[2], p[3]
        fin, fout = c.v(0), c.v(1)
        qin = min(c.qi(0), c.qi(1))
        if c.first:
            c.set(0, init)
            c.set(1, float(Q_GOOD))
        level, q = c.st(0), int(c.st(1))
        c.put(0, level, q)
        c.put(1, _b(level >= lmax), q)
        c.put(2, _b(level <= 0.0), q)
        nl = level + (fin - fout - drain * level) * (c.dt / 1e9) / area
        if nl < 0.0:
            nl = 0.0
        if nl > lmax:
            nl = lmax
        if math.isfinite(nl) and qin != Q_BAD:
            c.set(0, nl)
            c.set(1, float(qin))
        else:
            c.set(1, float(Q_BAD))
    else:  # DELAY
        x, qx = c.v(0), c.qi(0)
        if c.first:
            c.set(0, p[0])
            c.set(1, float(Q_GOOD))
        c.put(0, c.st(0), int(c.st(1)))
        c.set(0, x)
        c.set(1, float(qx))


_Impl = Callable[[_Ctx, int], None]
_GROUPS: list[tuple[tuple[str, ...], _Impl]] = [
    (("AND", "OR", "XOR"), _logic),
    (("GT", "GE", "LT", "LE", "EQ", "NE"), _compare),
    (("ADD", "SUB", "MUL", "DIV"), _arith),
    (("MIN", "MAX", "ABS", "LIMIT", "SCALE", "SEL", "MUX", "MOVE"), _select),
    (("R_TRIG", "F_TRIG", "SR", "RS"), _edge_latch),
    (("TON", "TOF", "TP"), _timer),
    (("CTU", "CTD", "CTUD"), _counter),
    (("PID",), _pid),
    (("RAMP", "HYSTERESIS", "LAG", "AVERAGE"), _filters),
    (("SIGNAL_GENERATOR", "TANK", "DELAY"), _sources),
]
_DISPATCH: dict[int, _Impl] = {OP[n]: f for names, f in _GROUPS for n in names}


def _not(c: _Ctx, op: int) -> None:
    c.put(0, _b(c.v(0) == 0.0), c.qi(0))


_DISPATCH[OP["NOT"]] = _not


def reference_run(  # noqa: PLR0917 - the C kernel's signature
    instructions: npt.NDArray[Any],
    img: npt.NDArray[np.float64],
    quality: npt.NDArray[np.uint8],
    state: npt.NDArray[np.float64],
    params: npt.NDArray[np.float64],
    now_ns: int,
    dt_ns: int,
    first_scan: bool,
) -> int:
    """Run the instructions like ``petra_blocks_run``, updating the arrays in place."""
    del now_ns  # like the kernel, every block runs on dt
    im: list[float] = img.tolist()
    qu: list[int] = quality.tolist()
    st: list[float] = state.tolist()
    pa: list[float] = params.tolist()
    c = _Ctx(im, qu, st)
    c.dt = float(dt_ns) if dt_ns > 0 else 0.0
    for row in instructions.tolist():
        op, n_in, n_out, flags, ins, outs, so, po = row
        c.ins, c.outs, c.n_in, c.so = list(ins)[:n_in], list(outs)[:n_out], n_in, so
        c.p = pa[po : po + 8]
        c.first = bool(first_scan) or bool(flags & 1)
        impl = _DISPATCH.get(op)
        if impl is None:
            return -1
        impl(c, op)
    img[:] = im
    quality[:] = qu
    state[:] = st
    return len(instructions)
