/* Instruction-set levels of the CPU kernels, chosen at run time.
 * TPD_CPU_ISA=scalar|avx2|avx512|avx512bf16|amx caps the choice (tests use it
 * to exercise every path the machine supports). */
#ifndef TPD_CPU_ISA_H
#define TPD_CPU_ISA_H

#include "runtime/base/error.h"

typedef enum {
  TPD_ISA_SCALAR = 0,
  TPD_ISA_AVX2,       /* AVX2 + FMA + F16C */
  TPD_ISA_AVX512,     /* AVX-512 F/BW/VL */
  TPD_ISA_AVX512BF16, /* ... plus AVX512_BF16 dot products */
  TPD_ISA_AMX         /* ... plus AMX-BF16 tiles (CPU and OS support them; see tpd_amx_grant) */
} tpd_isa;
#define TPD_ISA_BEST TPD_ISA_AMX

tpd_isa tpd_isa_detect(void);   /* the best the CPU supports */
/* Linux's grant of the AMX tile state to this process (arch_prctl
 * ARCH_REQ_XCOMP_PERM), asked once, when the AMX kernel is first chosen;
 * 1 granted.  Not granted: the bf16 path runs vdpbf16ps instead. */
int tpd_amx_grant(void);
tpd_isa tpd_isa_active(void);   /* detect, capped by TPD_CPU_ISA */
void tpd_isa_force(tpd_isa isa); /* tests: use this level (capped by detect) */
const char *tpd_isa_name(tpd_isa isa);

/* The cpu backend's bf16 path for bf16 weights' matmuls, chosen per
 * backend at create (tpd_backend_opts.activations; kernels/cpu/backend_cpu.c):
 * 0 fp32 activations and FMA, the reference precision; 1 activations
 * rounded to bf16 as the matmuls read them (GPU-like precision) and
 * AMX-BF16 tiles where the level is amx, vdpbf16ps otherwise.  For
 * activations auto, TPD_CPU_BF16_DOT=0 or 1 decides; unset, it is 1 where
 * the CPU has AVX512-BF16 and its vdpbf16ps rate is at least
 * TPD_CPU_BF16_AUTO_MIN times its f32 FMA rate (tpd_cpu_bf16_dot_speedup:
 * 2.00 on the Zen 5 measured, where every batch ran as fast or faster with
 * it; about 1 on the Xeons measured, where vdpbf16ps was slower than the
 * f32 kernel and AMX slower at batch 1; docs/performance.md). */
#define TPD_CPU_BF16_AUTO_MIN 1.4

/* Arithmetic-rate probes (kernels/cpu/cpu_probe.c): one thread's loop of
 * independent accumulator chains of one instruction kind, for the default
 * above and the bench's compute floor.  The caller makes sure the CPU has
 * the kind (AMX: tpd_amx_grant). */
typedef enum { TPD_PROBE_SCALAR = 0, TPD_PROBE_AVX2, TPD_PROBE_AVX512, TPD_PROBE_BF16, TPD_PROBE_AMX } tpd_probe_kind;
float tpd_cpu_probe_loop(tpd_probe_kind kind, long iters); /* a sum to keep, so the loop is not dropped */
double tpd_cpu_probe_flops(tpd_probe_kind kind);          /* flops of one iteration */
/* This CPU's vdpbf16ps rate over its AVX-512 f32 FMA rate, one thread, best
 * of several short loops of each, measured once per process (a few ms); 0
 * where the CPU has no AVX512-BF16. */
double tpd_cpu_bf16_dot_speedup(void);

/* Software prefetch distance of the matmul.  TPD_CPU_PREFETCH=N: N bytes
 * ahead of each weight stream, 0 turns it off.  Unset (the default,
 * TPD_CPU_PREFETCH_AUTO): TPD_CPU_PREFETCH_SPAN bytes ahead shared among
 * the streams a block reads, 2048 bytes ahead of each of four panels, 4096
 * of each of two (docs/performance.md, "CPU decode at the floor", has the
 * measurements). */
#define TPD_CPU_PREFETCH_AUTO (-2)
#define TPD_CPU_PREFETCH_SPAN 8192
#define TPD_CPU_PREFETCH_DEFAULT TPD_CPU_PREFETCH_AUTO
#define TPD_CPU_PREFETCH_MAX 65536
int tpd_cpu_prefetch(void); /* bytes, or TPD_CPU_PREFETCH_AUTO */
/* bytes, TPD_CPU_PREFETCH_AUTO, or -1: back to TPD_CPU_PREFETCH, read on next use */
void tpd_cpu_set_prefetch(int bytes);

/* The order in which the SIMD attention kernels read a (token, chunk)
 * pair's KV cache: 1 (default) every KV head in one item, a KV block at a
 * time, so the blocks are read whole in address order; 0 one item per KV
 * head, each head's rows of every block in turn (the order before
 * 2026-12-04; docs/performance.md, "Attention in address order", has the
 * measurements).  TPD_CPU_ATT_BLOCKS sets it; the scalar kernel always
 * takes one head at a time. */
int tpd_cpu_att_blocks(void);
void tpd_cpu_set_att_blocks(int on); /* -1: back to TPD_CPU_ATT_BLOCKS, read on next use */

/* The environment's settings, checked (tpd_backend_cpu_create runs these
 * before it starts anything): TPD_CPU_ISA names one of the levels above;
 * TPD_CPU_BF16_DOT and TPD_CPU_ATT_BLOCKS are 0 or 1; TPD_CPU_PREFETCH an integer in
 * [0, TPD_CPU_PREFETCH_MAX].  Unset or empty: the default (TPD_CPU_BF16_DOT:
 * *on = -1, the measured choice above).  Anything else is TPD_ERR_ARG naming
 * the variable, its value and what it accepts.  *cap: the level TPD_CPU_ISA
 * names (the highest when unset). */
tpd_status tpd_isa_env(tpd_isa *cap);
tpd_status tpd_cpu_bf16_dot_env(int *on);
tpd_status tpd_cpu_prefetch_env(int *n_bytes);
tpd_status tpd_cpu_att_blocks_env(int *on);

#endif
