/*
 * blocks.c - the built-in block kernel (see blocks.h for the rules it keeps).
 *
 * Each case reads all of its inputs into locals before it writes an output, so
 * a block whose output slot is also one of its inputs still sees this cycle's
 * input. Every expression is written in the order the Python reference model
 * (petra/blocks/_reference.py) evaluates it; change both together.
 */
#include "blocks.h"
#include "petra.h"

#include <math.h>
#include <string.h>

_Static_assert(sizeof(petra_instr_t) == 64, "petra_instr_t is one cache line");
_Static_assert(offsetof(petra_instr_t, in) == 8, "petra_instr_t.in offset");
_Static_assert(offsetof(petra_instr_t, out) == 40, "petra_instr_t.out offset");
_Static_assert(offsetof(petra_instr_t, state) == 56, "petra_instr_t.state offset");
_Static_assert(offsetof(petra_instr_t, param) == 60, "petra_instr_t.param offset");

enum { Q_BAD = 0, Q_UNCERTAIN = 1, Q_GOOD = 2 };

/* Counters count in the IEC DINT range. */
#define CMAX 2147483647.0
#define CMIN (-2147483648.0)
#define AVG_MAX 1024
#define TWO_PI 6.283185307179586
#define TWO_POW_53 9007199254740992.0

#define V(k) img[ins->in[(k)]]
#define QI(k) quality[ins->in[(k)]]

static inline uint8_t qmin(uint8_t a, uint8_t b) { return a < b ? a : b; }

static inline uint8_t qall(const petra_instr_t *ins, const uint8_t *quality) {
    uint8_t q = Q_GOOD;
    for (unsigned k = 0; k < ins->n_in; k++) q = qmin(q, QI(k));
    return q;
}

static inline void put(double *img, uint8_t *quality, uint32_t idx, double v, uint8_t q) {
    img[idx] = v;
    quality[idx] = q;
}

static inline double b2d(int b) { return b ? 1.0 : 0.0; }

/* Arithmetic results that are not finite are BAD (overflow, inf-inf, NaN in). */
static inline uint8_t qfinite(double v, uint8_t q) { return isfinite(v) ? q : Q_BAD; }

/* A preset or load value as a count: NaN -> 0, clamped to DINT, truncated. */
static inline double as_count(double x) {
    if (x != x) return 0.0;
    if (x < CMIN) return CMIN;
    if (x > CMAX) return CMAX;
    return trunc(x);
}

/* splitmix64 finaliser: a stateless hash of (seed, sample index). */
static inline uint64_t mix64(uint64_t z) {
    z += 0x9E3779B97F4A7C15ULL;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

static void run_pid(const petra_instr_t *ins, double *img, uint8_t *quality, double *s,
                    const double *p, double dt, int first) {
    const double kp = p[0], ti = p[1], td = p[2], lo = p[3], hi = p[4];
    const int direct = p[5] != 0.0;
    const double sp = V(0), pv = V(1), mo = V(3);
    const int man = V(2) != 0.0;
    const double e = direct ? pv - sp : sp - pv;
    const double dts = dt / 1e9;
    uint32_t o = ins->out[0];
    if (first) {
        s[0] = 0.0;
        s[1] = pv;
    }
    if (man) {
        double u = mo;
        if (u > hi) u = hi;
        if (u < lo) u = lo;
        uint8_t q = qmin(QI(2), QI(3));
        if (isfinite(u)) {
            /* bumpless: the integral absorbs the difference to the manual output */
            s[0] = u - kp * e;
            s[1] = pv;
        } else {
            q = Q_BAD;
        }
        put(img, quality, o, u, q);
        return;
    }
    uint8_t q = qmin(qmin(QI(0), QI(1)), QI(2));
    if (q == Q_BAD) {
        quality[o] = Q_BAD; /* hold the output value and the state */
        return;
    }
    double dterm = 0.0;
    if (dts > 0.0 && !first) {
        double dpv = pv - s[1];
        double de = direct ? dpv : -dpv;
        dterm = kp * td * de / dts;
    }
    double inew = s[0] + kp * dts / ti * e;
    double u = kp * e + inew + dterm;
    if (u > hi) {
        u = hi;
        if (inew > s[0]) inew = s[0];
    } else if (u < lo) {
        u = lo;
        if (inew < s[0]) inew = s[0];
    }
    if (!isfinite(u) || !isfinite(inew)) {
        quality[o] = Q_BAD;
        return;
    }
    s[0] = inew;
    s[1] = pv;
    put(img, quality, o, u, q);
}

static void run_siggen(const petra_instr_t *ins, double *img, uint8_t *quality, double *s,
                       const double *p, double dt, int first) {
    const int wf = (int)p[0];
    const double amp = p[1], off = p[2], per = p[3] * 1e9;
    double t = first ? 0.0 : s[0] + dt;
    s[0] = t;
    double ph = fmod(t, per) / per;
    double y;
    switch (wf) {
    case 0:
        y = off + amp * sin(TWO_PI * ph);
        break;
    case 1:
        y = ph < 0.5 ? off + amp : off - amp;
        break;
    case 2:
        y = off + amp * ph;
        break;
    default: {
        uint64_t k = (uint64_t)fmod(floor(t / per), TWO_POW_53);
        uint64_t seed = (uint64_t)p[4];
        double u = (double)(mix64(seed + k) >> 11) / TWO_POW_53;
        y = off + amp * (2.0 * u - 1.0);
        break;
    }
    }
    put(img, quality, ins->out[0], y, qfinite(y, Q_GOOD));
}

static void run_average(const petra_instr_t *ins, double *img, uint8_t *quality, double *s,
                        const double *p, int first) {
    const int n = (int)p[0];
    double *vals = s + 2, *quals = s + 2 + n;
    const double x = V(0);
    if (first) {
        s[0] = 0.0;
        s[1] = 0.0;
    }
    int pos = (int)s[1];
    int count = (int)s[0];
    vals[pos] = x;
    quals[pos] = (double)QI(0);
    pos = pos + 1 == n ? 0 : pos + 1;
    if (count < n) count++;
    s[0] = (double)count;
    s[1] = (double)pos;
    double sum = 0.0;
    uint8_t q = Q_GOOD;
    for (int i = 0; i < count; i++) {
        sum = sum + vals[i];
        q = qmin(q, (uint8_t)quals[i]);
    }
    double y = sum / (double)count;
    put(img, quality, ins->out[0], y, qfinite(y, q));
}

static void run_tank(const petra_instr_t *ins, double *img, uint8_t *quality, double *s,
                     const double *p, double dt, int first) {
    const double area = p[0], lmax = p[1], init = p[2], drain = p[3];
    const double fin = V(0), fout = V(1);
    const uint8_t qin = qmin(QI(0), QI(1));
    if (first) {
        s[0] = init;
        s[1] = (double)Q_GOOD;
    }
    /* delay element: this cycle's outputs come from the state alone */
    const double level = s[0];
    const uint8_t q = (uint8_t)s[1];
    put(img, quality, ins->out[0], level, q);
    put(img, quality, ins->out[1], b2d(level >= lmax), q);
    put(img, quality, ins->out[2], b2d(level <= 0.0), q);
    double nl = level + (fin - fout - drain * level) * (dt / 1e9) / area;
    if (nl < 0.0) nl = 0.0;
    if (nl > lmax) nl = lmax;
    if (isfinite(nl) && qin != Q_BAD) {
        s[0] = nl;
        s[1] = (double)qin;
    } else {
        s[1] = (double)Q_BAD;
    }
}

int64_t petra_blocks_run(const petra_instr_t *prog, size_t n, double *img,
                         uint8_t *quality, double *state, const double *params,
                         int64_t now_ns, int64_t dt_ns, int first_scan) {
    (void)now_ns; /* every block runs on dt; now_ns is part of the contract for later ops */
    const double dt = dt_ns > 0 ? (double)dt_ns : 0.0;
    for (size_t i = 0; i < n; i++) {
        const petra_instr_t *ins = &prog[i];
        const int first = first_scan || (ins->flags & PETRA_BF_FRESH);
        double *s = state + ins->state;
        const double *p = params + ins->param;
        const uint32_t o = ins->out[0];
        switch (ins->op) {
        case PETRA_OP_NOP:
            break;
        case PETRA_OP_AND:
        case PETRA_OP_OR:
        case PETRA_OP_XOR: {
            int acc = ins->op == PETRA_OP_AND;
            for (unsigned k = 0; k < ins->n_in; k++) {
                int x = V(k) != 0.0;
                if (ins->op == PETRA_OP_AND) acc = acc && x;
                else if (ins->op == PETRA_OP_OR) acc = acc || x;
                else acc = acc ^ x;
            }
            put(img, quality, o, b2d(acc), qall(ins, quality));
            break;
        }
        case PETRA_OP_NOT:
            put(img, quality, o, b2d(V(0) == 0.0), QI(0));
            break;
        case PETRA_OP_GT:
        case PETRA_OP_GE:
        case PETRA_OP_LT:
        case PETRA_OP_LE:
        case PETRA_OP_EQ:
        case PETRA_OP_NE: {
            const double a = V(0), b = V(1);
            int r;
            switch (ins->op) {
            case PETRA_OP_GT: r = a > b; break;
            case PETRA_OP_GE: r = a >= b; break;
            case PETRA_OP_LT: r = a < b; break;
            case PETRA_OP_LE: r = a <= b; break;
            case PETRA_OP_EQ: r = a == b || fabs(a - b) <= p[0]; break;
            default: r = !(a == b || fabs(a - b) <= p[0]); break;
            }
            put(img, quality, o, b2d(r), qmin(QI(0), QI(1)));
            break;
        }
        case PETRA_OP_ADD:
        case PETRA_OP_MUL: {
            double r = V(0);
            for (unsigned k = 1; k < ins->n_in; k++)
                r = ins->op == PETRA_OP_ADD ? r + V(k) : r * V(k);
            put(img, quality, o, r, qfinite(r, qall(ins, quality)));
            break;
        }
        case PETRA_OP_SUB: {
            const double r = V(0) - V(1);
            put(img, quality, o, r, qfinite(r, qmin(QI(0), QI(1))));
            break;
        }
        case PETRA_OP_DIV: {
            const double a = V(0), b = V(1);
            if (b == 0.0) {
                quality[o] = Q_BAD; /* value kept */
            } else {
                const double r = a / b;
                put(img, quality, o, r, qfinite(r, qmin(QI(0), QI(1))));
            }
            break;
        }
        case PETRA_OP_MIN:
        case PETRA_OP_MAX: {
            double r = V(0);
            for (unsigned k = 1; k < ins->n_in; k++) {
                const double x = V(k);
                if (x != x || (ins->op == PETRA_OP_MIN ? x < r : x > r)) r = x;
            }
            put(img, quality, o, r, qall(ins, quality));
            break;
        }
        case PETRA_OP_ABS:
            put(img, quality, o, fabs(V(0)), QI(0));
            break;
        case PETRA_OP_LIMIT: {
            const double mn = V(0), mx = V(2);
            double r = V(1);
            if (r < mn) r = mn;
            if (r > mx) r = mx;
            put(img, quality, o, r, qall(ins, quality));
            break;
        }
        case PETRA_OP_SCALE: {
            const double x = V(0);
            double r = p[2] + (x - p[0]) * (p[3] - p[2]) / (p[1] - p[0]);
            if (p[4] != 0.0) {
                const double lo = p[2] < p[3] ? p[2] : p[3];
                const double hi = p[2] < p[3] ? p[3] : p[2];
                if (r < lo) r = lo;
                if (r > hi) r = hi;
            }
            put(img, quality, o, r, qfinite(r, QI(0)));
            break;
        }
        case PETRA_OP_SEL: {
            const unsigned k = V(0) != 0.0 ? 2 : 1;
            put(img, quality, o, V(k), qmin(QI(0), QI(k)));
            break;
        }
        case PETRA_OP_MUX: {
            const unsigned nk = ins->n_in - 1u;
            const double k = V(nk);
            if (k >= 1.0 && k <= (double)nk) {
                const unsigned idx = (unsigned)k - 1u;
                put(img, quality, o, V(idx), qmin(QI(nk), QI(idx)));
            } else {
                quality[o] = Q_BAD; /* selector out of range: value kept */
            }
            break;
        }
        case PETRA_OP_MOVE:
            put(img, quality, o, V(0), QI(0));
            break;
        case PETRA_OP_R_TRIG:
        case PETRA_OP_F_TRIG: {
            const int clk = V(0) != 0.0;
            if (first) s[0] = 0.0;
            const int m = s[0] != 0.0;
            const int r = ins->op == PETRA_OP_R_TRIG ? clk && !m : !clk && m;
            s[0] = b2d(clk);
            put(img, quality, o, b2d(r), QI(0));
            break;
        }
        case PETRA_OP_SR:
        case PETRA_OP_RS: {
            const int set = V(0) != 0.0, reset = V(1) != 0.0;
            if (first) s[0] = 0.0;
            const int q1 = s[0] != 0.0;
            const int r = ins->op == PETRA_OP_SR ? set || (!reset && q1) : !reset && (set || q1);
            s[0] = b2d(r);
            put(img, quality, o, b2d(r), qmin(QI(0), QI(1)));
            break;
        }
        case PETRA_OP_TON:
        case PETRA_OP_TOF:
        case PETRA_OP_TP: {
            const int in = V(0) != 0.0;
            double pt = V(1) * 1e9;
            if (!(pt > 0.0)) pt = 0.0;
            if (first) {
                s[0] = 0.0;
                s[1] = 0.0;
                s[2] = 0.0;
            }
            const int prev = s[0] != 0.0;
            double et = s[1];
            int q;
            if (ins->op == PETRA_OP_TON) {
                if (in) {
                    et = prev ? et + dt : 0.0;
                    if (et > pt) et = pt;
                    q = et >= pt;
                } else {
                    et = 0.0;
                    q = 0;
                }
            } else if (ins->op == PETRA_OP_TOF) {
                int running = s[2] != 0.0;
                if (in) {
                    et = 0.0;
                    running = 0;
                    q = 1;
                } else {
                    if (prev) {
                        running = 1;
                        et = 0.0;
                    } else if (running) {
                        et = et + dt;
                    }
                    if (running && et >= pt) {
                        et = pt;
                        running = 0;
                        q = 0;
                    } else {
                        q = running;
                    }
                }
                s[2] = b2d(running);
            } else {
                int running = s[2] != 0.0;
                if (running) {
                    et = et + dt;
                } else if (in && !prev) {
                    running = 1;
                    et = 0.0;
                }
                if (running && et >= pt) {
                    et = pt;
                    running = 0;
                }
                if (!running && !in) et = 0.0;
                q = running;
                s[2] = b2d(running);
            }
            s[0] = b2d(in);
            s[1] = et;
            const uint8_t qq = qmin(QI(0), QI(1));
            put(img, quality, o, b2d(q), qq);
            put(img, quality, ins->out[1], et / 1e9, qq);
            break;
        }
        case PETRA_OP_CTU:
        case PETRA_OP_CTD: {
            const int clk = V(0) != 0.0, rl = V(1) != 0.0;
            const double pv = V(2);
            if (first) {
                s[0] = 0.0;
                s[1] = 0.0;
            }
            const int edge = clk && s[0] == 0.0;
            double cv = s[1];
            int q;
            if (ins->op == PETRA_OP_CTU) {
                if (rl) cv = 0.0;
                else if (edge && cv < CMAX) cv = cv + 1.0;
                q = cv >= pv;
            } else {
                if (rl) cv = as_count(pv);
                else if (edge && cv > CMIN) cv = cv - 1.0;
                q = cv <= 0.0;
            }
            s[0] = b2d(clk);
            s[1] = cv;
            const uint8_t qq = qall(ins, quality);
            put(img, quality, o, b2d(q), qq);
            put(img, quality, ins->out[1], cv, qq);
            break;
        }
        case PETRA_OP_CTUD: {
            const int cu = V(0) != 0.0, cd = V(1) != 0.0, r = V(2) != 0.0, ld = V(3) != 0.0;
            const double pv = V(4);
            if (first) {
                s[0] = 0.0;
                s[1] = 0.0;
                s[2] = 0.0;
            }
            const int cue = cu && s[0] == 0.0, cde = cd && s[1] == 0.0;
            double cv = s[2];
            if (r) {
                cv = 0.0;
            } else if (ld) {
                cv = as_count(pv);
            } else if (!(cue && cde)) {
                if (cue && cv < CMAX) cv = cv + 1.0;
                else if (cde && cv > CMIN) cv = cv - 1.0;
            }
            s[0] = b2d(cu);
            s[1] = b2d(cd);
            s[2] = cv;
            const uint8_t qq = qall(ins, quality);
            put(img, quality, o, b2d(cv >= pv), qq);
            put(img, quality, ins->out[1], b2d(cv <= 0.0), qq);
            put(img, quality, ins->out[2], cv, qq);
            break;
        }
        case PETRA_OP_PID:
            run_pid(ins, img, quality, s, p, dt, first);
            break;
        case PETRA_OP_RAMP: {
            const double x = V(0), up = p[0] * (dt / 1e9), dn = p[1] * (dt / 1e9);
            double y;
            if (first) {
                y = x;
            } else {
                const double d = x - s[0];
                if (d > up) y = s[0] + up;
                else if (d < -dn) y = s[0] - dn;
                else y = x;
            }
            if (isfinite(y)) s[0] = y;
            put(img, quality, o, y, qfinite(y, QI(0)));
            break;
        }
        case PETRA_OP_HYSTERESIS: {
            const double x = V(0);
            if (first) s[0] = 0.0;
            if (x > p[0]) s[0] = 1.0;
            else if (x < p[1]) s[0] = 0.0;
            put(img, quality, o, s[0], QI(0));
            break;
        }
        case PETRA_OP_AVERAGE:
            run_average(ins, img, quality, s, p, first);
            break;
        case PETRA_OP_LAG: {
            const double x = V(0), den = p[0] + dt / 1e9;
            const double a = den > 0.0 ? (dt / 1e9) / den : 1.0;
            const double y = first ? x : s[0] + (x - s[0]) * a;
            if (isfinite(y)) s[0] = y;
            put(img, quality, o, y, qfinite(y, QI(0)));
            break;
        }
        case PETRA_OP_SIGNAL_GENERATOR:
            run_siggen(ins, img, quality, s, p, dt, first);
            break;
        case PETRA_OP_TANK:
            run_tank(ins, img, quality, s, p, dt, first);
            break;
        case PETRA_OP_DELAY: {
            const double x = V(0);
            const uint8_t qx = QI(0);
            if (first) {
                s[0] = p[0];
                s[1] = (double)Q_GOOD;
            }
            put(img, quality, o, s[0], (uint8_t)s[1]);
            s[0] = x;
            s[1] = (double)qx;
            break;
        }
        default:
            return PETRA_EINVAL;
        }
    }
    return (int64_t)n;
}

/* Arity and sizes per op: inputs min..max, outputs, params, state (AVERAGE: +2n). */
typedef struct {
    uint8_t min_in, max_in, n_out, n_params, n_state;
} op_shape_t;

static int op_shape(unsigned op, op_shape_t *sh) {
    static const struct { uint16_t op; op_shape_t sh; } table[] = {
        {PETRA_OP_NOP, {0, 8, 0, 0, 0}},
        {PETRA_OP_AND, {2, 8, 1, 0, 0}}, {PETRA_OP_OR, {2, 8, 1, 0, 0}},
        {PETRA_OP_XOR, {2, 8, 1, 0, 0}}, {PETRA_OP_NOT, {1, 1, 1, 0, 0}},
        {PETRA_OP_GT, {2, 2, 1, 0, 0}}, {PETRA_OP_GE, {2, 2, 1, 0, 0}},
        {PETRA_OP_LT, {2, 2, 1, 0, 0}}, {PETRA_OP_LE, {2, 2, 1, 0, 0}},
        {PETRA_OP_EQ, {2, 2, 1, 1, 0}}, {PETRA_OP_NE, {2, 2, 1, 1, 0}},
        {PETRA_OP_ADD, {2, 8, 1, 0, 0}}, {PETRA_OP_SUB, {2, 2, 1, 0, 0}},
        {PETRA_OP_MUL, {2, 8, 1, 0, 0}}, {PETRA_OP_DIV, {2, 2, 1, 0, 0}},
        {PETRA_OP_MIN, {2, 8, 1, 0, 0}}, {PETRA_OP_MAX, {2, 8, 1, 0, 0}},
        {PETRA_OP_ABS, {1, 1, 1, 0, 0}}, {PETRA_OP_LIMIT, {3, 3, 1, 0, 0}},
        {PETRA_OP_SCALE, {1, 1, 1, 5, 0}}, {PETRA_OP_SEL, {3, 3, 1, 0, 0}},
        {PETRA_OP_MUX, {2, 8, 1, 0, 0}}, {PETRA_OP_MOVE, {1, 1, 1, 0, 0}},
        {PETRA_OP_R_TRIG, {1, 1, 1, 0, 1}}, {PETRA_OP_F_TRIG, {1, 1, 1, 0, 1}},
        {PETRA_OP_SR, {2, 2, 1, 0, 1}}, {PETRA_OP_RS, {2, 2, 1, 0, 1}},
        {PETRA_OP_TON, {2, 2, 2, 0, 3}}, {PETRA_OP_TOF, {2, 2, 2, 0, 3}},
        {PETRA_OP_TP, {2, 2, 2, 0, 3}}, {PETRA_OP_CTU, {3, 3, 2, 0, 2}},
        {PETRA_OP_CTD, {3, 3, 2, 0, 2}}, {PETRA_OP_CTUD, {5, 5, 3, 0, 3}},
        {PETRA_OP_PID, {4, 4, 1, 6, 2}}, {PETRA_OP_RAMP, {1, 1, 1, 2, 1}},
        {PETRA_OP_HYSTERESIS, {1, 1, 1, 2, 1}}, {PETRA_OP_AVERAGE, {1, 1, 1, 1, 2}},
        {PETRA_OP_LAG, {1, 1, 1, 1, 1}}, {PETRA_OP_SIGNAL_GENERATOR, {0, 0, 1, 5, 1}},
        {PETRA_OP_TANK, {2, 2, 3, 4, 2}}, {PETRA_OP_DELAY, {1, 1, 1, 1, 2}},
    };
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++) {
        if (table[i].op == op) {
            *sh = table[i].sh;
            return 1;
        }
    }
    return 0;
}

int64_t petra_blocks_check(const petra_instr_t *prog, size_t n, size_t image_size,
                           size_t n_state, const double *params, size_t n_params) {
    for (size_t i = 0; i < n; i++) {
        const petra_instr_t *ins = &prog[i];
        const int64_t bad = -(int64_t)(i + 1);
        op_shape_t sh;
        if (!op_shape(ins->op, &sh)) return bad;
        if (ins->n_in < sh.min_in || ins->n_in > sh.max_in || ins->n_out != sh.n_out) return bad;
        if (ins->op == PETRA_OP_MUX && ins->n_in < 2) return bad;
        for (unsigned k = 0; k < ins->n_in; k++)
            if (ins->in[k] >= image_size) return bad;
        for (unsigned k = 0; k < ins->n_out; k++)
            if (ins->out[k] >= image_size) return bad;
        if ((size_t)ins->param + sh.n_params > n_params) return bad;
        size_t ns = sh.n_state;
        if (ins->op == PETRA_OP_AVERAGE) {
            const double w = params[ins->param];
            if (!(w >= 1.0 && w <= AVG_MAX) || w != trunc(w)) return bad;
            ns += 2 * (size_t)w;
        }
        if (ins->op == PETRA_OP_SIGNAL_GENERATOR) {
            const double per = params[ins->param + 3], seed = params[ins->param + 4];
            if (!(per >= 1e-6 && isfinite(per)) || !(seed >= 0.0 && seed < TWO_POW_53)) return bad;
        }
        if ((size_t)ins->state + ns > n_state) return bad;
    }
    return 0;
}

size_t petra_blocks_instr_size(void) { return sizeof(petra_instr_t); }
