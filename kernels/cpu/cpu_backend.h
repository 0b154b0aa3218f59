/* Internal state of the CPU backend, shared by its source files; the
 * allocator (tpd_cpu_alloc) also serves the bandwidth probe of launch/tools. */
#ifndef TPD_CPU_BACKEND_H
#define TPD_CPU_BACKEND_H

#include <stdint.h>

#include "kernels/backend.h"
#include "kernels/cpu/attention.h"
#include "kernels/cpu/cpu_isa.h"
#include "kernels/cpu/pool.h"

typedef struct {
  tpd_pool *pool;
  int bf16_dot;  /* bf16 weights' matmuls round x to bf16 (tpd_backend_opts.activations), at levels with it */
  void *scratch; /* matmul, [M, Kp]: x rounded to bf16 (the bf16 dot path) or a zero-padded f32 x */
  size_t scratch_bytes;
  int planned; /* reserve ran: the workspaces are fixed (a larger need is an error) */
  unsigned char *att;  /* attention: per-thread scratch, chunk partials, wave index (kernels/cpu/attention.h) */
  tpd_att_sizes att_sz; /* what att holds */
} tpd_cpu;

tpd_status tpd_cpu_scratch(tpd_cpu *cpu, size_t n_bytes);
/* (Re)allocates the attention workspace with these sizes. */
tpd_status tpd_cpu_att_alloc(tpd_cpu *cpu, const tpd_att_sizes *sz);

tpd_status tpd_cpu_matmul(tpd_backend *be, const tpd_matmul_args *a);
tpd_status tpd_cpu_rmsnorm(tpd_backend *be, const tpd_rmsnorm_args *a);
tpd_status tpd_cpu_rope_kv(tpd_backend *be, const tpd_rope_kv_args *a);
tpd_status tpd_cpu_attention(tpd_backend *be, const tpd_attention_args *a);
tpd_status tpd_cpu_swiglu(tpd_backend *be, const tpd_swiglu_args *a);
/* o[i] = g[i] / (1 + e^-g[i]) * u[i], one row, with a vector sigmoid (ops_avx512.c, ops_avx2.c) */
void tpd_swiglu_row_avx512(const float *g, const float *u, float *o, int n);
void tpd_swiglu_row_avx2(const float *g, const float *u, float *o, int n);
tpd_status tpd_cpu_gather_rows(tpd_backend *be, void *dst, const void *src, const int32_t *rows, int n, int D);
tpd_status tpd_cpu_argmax(tpd_backend *be, const tpd_argmax_args *a);
tpd_status tpd_cpu_logit_stats(tpd_backend *be, const tpd_logit_stats_args *a);

/* Allocation used for weights and buffers: 64-byte aligned, huge-page backed
 * where the kernel allows for large blocks. */
void *tpd_cpu_alloc(size_t n_bytes);
/* The bytes tpd_cpu_alloc(n_bytes) allocates: 64-byte aligned, from 1 MiB
 * whole 2 MiB pages; 0 where that would overflow (the allocation fails). */
size_t tpd_cpu_alloc_bytes(size_t n_bytes);
void tpd_cpu_free(void *p);

#endif
