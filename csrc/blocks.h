/*
 * blocks.h - the built-in block kernel: an instruction list over the process image.
 *
 * The scan owns a process image of `image_size` entries: `double img[]` holds each
 * value as float64 (bool as 0/1, int converted), `uint8_t quality[]` its quality
 * (0 BAD, 1 UNCERTAIN, 2 GOOD, as petra_quality_t). Indices 0..n_signals-1 are the
 * plant's signals, the rest are constants. petra/blocks/_program.py compiles a
 * plant's blocks into an array of petra_instr_t in execution order; one call to
 * petra_blocks_run() executes a run of consecutive built-ins.
 *
 * Rules the kernel keeps (and the Python reference model in
 * petra/blocks/_reference.py mirrors operation by operation, so the two agree
 * bit for bit):
 *   - no allocation, no clock, no libc beyond <math.h>: time comes in as now_ns
 *     and dt_ns, the same for every block of a cycle;
 *   - each block reads in[0..n_in-1] and writes out[0..n_out-1] (value and
 *     quality), keeps its memory in state[ins->state ...] and reads its
 *     parameters from params[ins->param ...];
 *   - output quality = the minimum of the qualities of the inputs the output was
 *     computed from; an arithmetic result that is not finite, or a division by
 *     zero, is BAD;
 *   - `first_scan`, or PETRA_BF_FRESH in an instruction's flags, resets that
 *     block's state (cold start or a block new in a hot reload);
 *   - floating-point expressions are evaluated in the order written, with no
 *     contraction into FMA (the build uses -std=c11, which sets
 *     -ffp-contract=off in GCC; baseline x86-64 has no FMA anyway).
 *
 * Indices are validated once, by petra_blocks_check() at compile time, never on
 * the cycle.
 */
#ifndef PETRA_BLOCKS_H
#define PETRA_BLOCKS_H

#include <stddef.h>
#include <stdint.h>

/* CFFI-BEGIN */
typedef struct {
    uint16_t op;          /* petra_op_t */
    uint8_t n_in;         /* inputs used in in[] */
    uint8_t n_out;        /* outputs used in out[] */
    uint32_t flags;       /* PETRA_BF_* */
    uint32_t in[8];       /* image indices of the inputs, in port order */
    uint32_t out[4];      /* image indices of the outputs, in port order */
    uint32_t state;       /* offset of the block's state in the state array */
    uint32_t param;       /* offset of the block's parameters in the params array */
} petra_instr_t;

typedef enum {
    PETRA_OP_NOP = 0,
    PETRA_OP_AND = 1,
    PETRA_OP_OR = 2,
    PETRA_OP_XOR = 3,
    PETRA_OP_NOT = 4,
    PETRA_OP_GT = 10,
    PETRA_OP_GE = 11,
    PETRA_OP_LT = 12,
    PETRA_OP_LE = 13,
    PETRA_OP_EQ = 14,
    PETRA_OP_NE = 15,
    PETRA_OP_ADD = 20,
    PETRA_OP_SUB = 21,
    PETRA_OP_MUL = 22,
    PETRA_OP_DIV = 23,
    PETRA_OP_MIN = 24,
    PETRA_OP_MAX = 25,
    PETRA_OP_ABS = 26,
    PETRA_OP_LIMIT = 27,
    PETRA_OP_SCALE = 28,
    PETRA_OP_SEL = 29,
    PETRA_OP_MUX = 30,
    PETRA_OP_MOVE = 31,
    PETRA_OP_R_TRIG = 40,
    PETRA_OP_F_TRIG = 41,
    PETRA_OP_SR = 42,
    PETRA_OP_RS = 43,
    PETRA_OP_TON = 50,
    PETRA_OP_TOF = 51,
    PETRA_OP_TP = 52,
    PETRA_OP_CTU = 53,
    PETRA_OP_CTD = 54,
    PETRA_OP_CTUD = 55,
    PETRA_OP_PID = 60,
    PETRA_OP_RAMP = 61,
    PETRA_OP_HYSTERESIS = 62,
    PETRA_OP_AVERAGE = 63,
    PETRA_OP_LAG = 64,
    PETRA_OP_SIGNAL_GENERATOR = 65,
    PETRA_OP_TANK = 66,
    PETRA_OP_DELAY = 67,
    PETRA_OP_COUNT = 68
} petra_op_t;

typedef enum {
    PETRA_BF_FRESH = 1    /* state starts fresh at the next run (hot reload) */
} petra_block_flag_t;

/* Runs prog[0..n-1] in order. Returns n, or a negative PETRA_E* (EINVAL for an
 * unknown op; nothing after it runs). */
int64_t petra_blocks_run(const petra_instr_t *prog, size_t n, double *img,
                         uint8_t *quality, double *state, const double *params,
                         int64_t now_ns, int64_t dt_ns, int first_scan);

/* Validates a program once before it runs: every op known, n_in/n_out within the
 * arrays and the op's arity, every index below image_size, every state and param
 * offset within its array. Returns 0, or -(1 + index of the first bad instruction). */
int64_t petra_blocks_check(const petra_instr_t *prog, size_t n, size_t image_size,
                           size_t n_state, const double *params, size_t n_params);

/* Size of petra_instr_t, for the Python side's structured dtype check. */
size_t petra_blocks_instr_size(void);
/* CFFI-END */

#endif
