/*
 * scan.h - what the scan process needs from C: real-time setup, the absolute-deadline
 * wait, and moving values between the segment and the process image.
 *
 * The process image is two arrays owned by the scan: double img[] and uint8_t q[],
 * indexed by signal index (then constants, see petra/blocks). Copy-in scatters slot
 * values into it; copy-out writes back only the outputs that changed since the last
 * write, so an unchanged output makes no journal entry.
 */
#ifndef PETRA_SCAN_H
#define PETRA_SCAN_H

#include <stddef.h>
#include <stdint.h>

/* CFFI-BEGIN */
typedef struct petra_seg petra_seg_t;

int petra_rt_mlockall(void);
int petra_rt_set_timerslack(unsigned long ns);
int petra_rt_dma_latency_hold(void);
void petra_rt_dma_latency_release(int fd);
int petra_rt_prefault_stack(size_t bytes);

int64_t petra_wait_until(int64_t deadline_ns, int64_t spin_ns);

int64_t petra_scan_copy_in(petra_seg_t *seg, const uint32_t *idx, size_t n, double *img,
                           uint8_t *quality);
int64_t petra_scan_copy_out(petra_seg_t *seg, const uint32_t *idx, size_t n,
                            const double *img, const uint8_t *quality, double *last,
                            uint8_t *last_quality, int force);
/* CFFI-END */

#endif
