/* rope_kv: rotary embedding (rotate-half layout) of the q and k heads of
 * each token's qkv row, in place, then the KV-cache append: the rotated k
 * heads and the v heads go to [n_blocks, Hkv, block_size, Dh] at the
 * token's (block_table[slot][pos / block_size], pos % block_size).  qkv and
 * the caches are in the activation dtype (bf16, or f32 in the float32-
 * activation mode; the KV cache always has the activations' dtype).
 *
 * Angles and the rotation are computed in double, as in the CPU twin; the
 * cos/sin come from sincospi(pos * inv_freq / pi), whose range reduction is
 * exact, so no slow-path trig routine (with its local-memory stack) is
 * compiled in.  grid = (T, ceil((Hq + 2 Hkv) / 8)), 128 threads: a block
 * computes the Dh/2 cos/sin pairs of its token once into shared memory and
 * applies them to its 8 heads. */
#include <stdint.h>

#include "kernels/cuda/cuda_backend.h"
#include "kernels/cuda/cuda_util.h"
#include "kernels/cuda/kv_index.h"

#define ROPE_THREADS 128
#define ROPE_HEADS 8

typedef struct {
  void *qkv; /* [T, (Hq + 2 Hkv) Dh] */
  const double *inv_freq;
  void *k_cache, *v_cache;
  tpd_kv_index kv;
  int Hq, Hkv, Dh;
} rope_params;

template <typename T>
static __global__ void __launch_bounds__(ROPE_THREADS) rope_kv_kernel(const rope_params p) {
  __shared__ double cs[TPD_MAX_HEAD_DIM / 2], sn[TPD_MAX_HEAD_DIM / 2];
  const int t = blockIdx.x, h0 = blockIdx.y * ROPE_HEADS;
  const int half = p.Dh / 2, n_heads = p.Hq + 2 * p.Hkv;
  const int nh = n_heads - h0 < ROPE_HEADS ? n_heads - h0 : ROPE_HEADS;
  const int pos = p.kv.pos[t];
  if (h0 < p.Hq + p.Hkv) /* block-uniform: this block rotates at least one head */
    for (int i = threadIdx.x; i < half; i += ROPE_THREADS) {
      const double turns = (double)pos * p.inv_freq[i] * 0.31830988618379067154; /* ang / pi */
      sincospi(turns, &sn[i], &cs[i]);
    }
  __syncthreads();
  const int blk = tpd_kv_blocks(p.kv, t)[pos / p.kv.block_size];
  const int off = pos % p.kv.block_size;
  T *row = (T *)p.qkv + (size_t)t * n_heads * p.Dh;
  for (int j = threadIdx.x; j < nh * half; j += ROPE_THREADS) {
    const int h = h0 + j / half, i = j % half;
    T *v = row + (size_t)h * p.Dh;
    if (h < p.Hq + p.Hkv) {
      const double x0 = tpd_act<T>::get(v[i]), x1 = tpd_act<T>::get(v[i + half]);
      const T y0 = tpd_act<T>::put((float)(x0 * cs[i] - x1 * sn[i]));
      const T y1 = tpd_act<T>::put((float)(x1 * cs[i] + x0 * sn[i]));
      v[i] = y0;
      v[i + half] = y1;
      if (h >= p.Hq) {
        T *k = (T *)p.k_cache + tpd_kv_row(blk, h - p.Hq, off, p.Hkv, p.kv.block_size, p.Dh);
        k[i] = y0;
        k[i + half] = y1;
      }
    } else {
      T *d = (T *)p.v_cache + tpd_kv_row(blk, h - p.Hq - p.Hkv, off, p.Hkv, p.kv.block_size, p.Dh);
      d[i] = v[i];
      d[i + half] = v[i + half];
    }
  }
}

extern "C" tpd_status tpd_cuda_rope_kv(tpd_backend *be, const tpd_rope_kv_args *a) {
  tpd_cuda *c = (tpd_cuda *)be->impl;
  if (!a || !a->meta || !a->qkv || !a->inv_freq || !a->k_cache || !a->v_cache)
    return TPD_FAIL(TPD_ERR_ARG, "cuda rope_kv: meta, qkv, inv_freq and both caches are required");
  const tpd_step_meta *mt = a->meta;
  if (a->head_dim <= 0 || a->head_dim % 2 || a->head_dim > TPD_MAX_HEAD_DIM || a->n_q_heads <= 0 ||
      a->n_kv_heads <= 0 || mt->block_size <= 0 || mt->T < 0)
    return TPD_FAIL(TPD_ERR_ARG, "cuda rope_kv: head_dim=%d (even, <= %d), heads %d/%d, block_size %d, T %d",
                    a->head_dim, TPD_MAX_HEAD_DIM, a->n_q_heads, a->n_kv_heads, mt->block_size, mt->T);
  if (mt->T == 0) return TPD_OK;
  rope_params p;
  p.qkv = a->qkv;
  p.inv_freq = a->inv_freq;
  p.k_cache = a->k_cache;
  p.v_cache = a->v_cache;
  p.kv = tpd_kv_index_of(mt);
  p.Hq = a->n_q_heads;
  p.Hkv = a->n_kv_heads;
  p.Dh = a->head_dim;
  const int n_heads = p.Hq + 2 * p.Hkv;
  const dim3 grid((unsigned)mt->T, (unsigned)((n_heads + ROPE_HEADS - 1) / ROPE_HEADS));
  const auto k = c->act == TPD_F32 ? rope_kv_kernel<float> : rope_kv_kernel<uint16_t>;
  k<<<grid, ROPE_THREADS, 0, c->stream>>>(p);
  TPD_CUDA_CHECK_LAUNCH(c, c->act == TPD_F32 ? "rope_kv_kernel<f32>" : "rope_kv_kernel<bf16>");
  return TPD_OK;
}
