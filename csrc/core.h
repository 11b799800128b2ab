/*
 * core.h - the per-process handle and helpers shared by the C sources.
 * Private to csrc/; see layout.h for the protocols.
 */
#ifndef PETRA_CORE_H
#define PETRA_CORE_H

#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L /* clock_gettime, CLOCK_MONOTONIC */
#endif

#include "layout.h"
#include "petra.h"

#include <time.h>

struct petra_seg {
    uint8_t *base;                  /* this process's mapping address */
    size_t size;
    int readonly;
    uint32_t writer;                /* id written into slots and journal entries */
    uint32_t retry_limit;           /* bounded seqlock retries before EBUSY */
    petra_header_t *hdr;
    petra_dir_entry_t *dir;
    petra_slot_t *slots;
    petra_journal_hdr_t *jhdr;
    petra_jentry_t *ring;
    uint64_t jmask;
    petra_stats_t *stats;
    petra_hb_t *hb;
    uint32_t n_signals;
    uint32_t n_hb;
};

static inline int64_t petra__clock(clockid_t id) {
    struct timespec ts;
    clock_gettime(id, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static inline void petra__cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

/* Write one float64 to a slot, converted to its type (internal: no argument checks
 * beyond the conversion; a non-finite value for an int/bool slot is EINVAL). */
int petra__write_f64_at(petra_seg_t *seg, uint32_t index, double value, uint8_t quality,
                        int64_t now);

/* Scatter-read slots into a process image (see scan.c). */
int64_t petra__read_scatter_f64(petra_seg_t *seg, const uint32_t *idx, size_t n,
                                double *img, uint8_t *quality);

/* Append one change; called by slot writers from inside their slot section. */
void petra__journal_put(petra_seg_t *seg, uint32_t slot, uint8_t type, uint64_t value,
                        uint8_t quality, uint8_t substatus, int64_t source_ts,
                        int64_t write_ts);

#endif
