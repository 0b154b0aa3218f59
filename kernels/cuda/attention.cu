/* attention: flash-decoding over the paged KV cache, decode and prefill.
 *
 * Each token t (at position pos[t] of sequence slot[t]) attends to its own
 * sequence's positions [max(0, pos - window + 1), pos] (window 0: all).
 * The context axis is cut into n_splits chunks of `chunk` positions:
 *
 *   attn_kernel  grid (n_splits, Hkv * n_hblocks, T), 128 threads (4 warps).
 *                A block takes one chunk, one KV head g and up to GB of the
 *                query heads that share it (GQA: the group's K/V rows are
 *                read once for all of them).  Each warp walks positions
 *                warp, warp + 4, ... (two per iteration, so four row loads
 *                are in flight), each lane holding EPL = Dh/32 (rounded up
 *                to 2, 4, 8 or 16) elements of q, K, V and the fp32 output
 *                accumulator; scores are reduced with shuffles and folded
 *                in with an online softmax (running max m, sum l).  The 4
 *                warps merge through shared memory.  With one split the
 *                block writes the normalised bf16 output; otherwise it
 *                writes (acc, m, l) partials.
 *   attn_combine grid (Hq, T): merges the partials of each (t, head).
 *
 * The grid depends only on (meta->max_ctx, T, heads, SM count), never on
 * device data, so the launch can be captured in a CUDA graph: blocks whose
 * chunk lies outside their token's range write an empty partial.  The caller
 * must keep meta->max_ctx >= pos + 1 of every token (as for the CPU twin).
 * Scores, softmax and accumulation are fp32; q, K, V and out are bf16. */
#include <math.h>
#include <stdint.h>

#include "kernels/cuda/cuda_backend.h"
#include "kernels/cuda/cuda_util.h"

#define ATT_WARPS 4
#define ATT_THREADS (ATT_WARPS * 32)
#define ATT_ACC 32     /* GB * EPL: accumulator floats per lane, every variant */
#define ATT_MAX_EPL 16 /* Dh <= 512 */
#define ATT_MAX_GB 16
#define ATT_MIN_CHUNK 64

typedef struct {
  const uint16_t *q; /* [T, ldq] */
  int ldq;
  const uint16_t *k_cache, *v_cache; /* [n_blocks, Hkv, block_size, Dh] */
  uint16_t *out;                     /* [T, Hq Dh] */
  const int32_t *pos, *slot, *block_table;
  int max_blocks, block_size;
  int Hq, Hkv, Dh, group;
  int heads_per_block, n_hblocks;
  int window;
  float scale;
  int chunk, n_splits;
  float *part; /* [T][Hq][n_splits][Dh + 2]: acc[Dh], m, l */
  int kv_vec;  /* each lane's K/V elements can be loaded as one vector */
} attn_params;

/* A lane's EPL elements [lane * EPL, lane * EPL + EPL) of a bf16 row, two per
 * word; zeros past Dh. */
static __device__ __forceinline__ void att_load(const uint16_t *src, int lane, int Dh, int vec, const int EPL,
                                                uint32_t *out) {
  const int e0 = lane * EPL;
  if (vec && e0 + EPL <= Dh) {
    if (EPL == 2) {
      out[0] = *(const uint32_t *)(src + e0);
    } else if (EPL == 4) {
      const uint2 t = *(const uint2 *)(src + e0);
      out[0] = t.x;
      out[1] = t.y;
    } else {
#pragma unroll
      for (int c = 0; c < EPL / 8; c++) {
        const uint4 t = *(const uint4 *)(src + e0 + 8 * c);
        out[4 * c + 0] = t.x;
        out[4 * c + 1] = t.y;
        out[4 * c + 2] = t.z;
        out[4 * c + 3] = t.w;
      }
    }
  } else {
#pragma unroll
    for (int e = 0; e < EPL / 2; e++) {
      const uint32_t lo = e0 + 2 * e < Dh ? (uint32_t)src[e0 + 2 * e] : 0u;
      const uint32_t hi = e0 + 2 * e + 1 < Dh ? (uint32_t)src[e0 + 2 * e + 1] : 0u;
      out[e] = lo | (hi << 16);
    }
  }
}

static __device__ __forceinline__ float att_elem(const uint32_t *w, const int e) {
  return (e & 1) ? tpd_bf16_hi(w[e / 2]) : tpd_bf16_lo(w[e / 2]);
}

/* Folds one position (its K and V words) into every head's running state. */
static __device__ __forceinline__ void att_update(const uint32_t *kr, const uint32_t *vr,
                                                  float (*q)[ATT_MAX_EPL], float *m, float *l,
                                                  float (*acc)[ATT_MAX_EPL], int gb, float scale, const int EPL,
                                                  const int GB) {
#pragma unroll
  for (int j = 0; j < GB; j++) {
    if (j < gb) {
      float d = 0.0f;
#pragma unroll
      for (int e = 0; e < EPL; e++) d = fmaf(q[j][e], att_elem(kr, e), d);
      d = tpd_warp_sum(d) * scale;
      const float mn = fmaxf(m[j], d);
      const float corr = __expf(m[j] - mn), pe = __expf(d - mn);
      l[j] = l[j] * corr + pe;
#pragma unroll
      for (int e = 0; e < EPL; e++) acc[j][e] = fmaf(pe, att_elem(vr, e), acc[j][e] * corr);
      m[j] = mn;
    }
  }
}

static __device__ __forceinline__ void attn_body(const attn_params p, const int EPL, const int GB) {
  __shared__ float sm_acc[ATT_WARPS][ATT_ACC * 32];
  __shared__ float sm_m[ATT_WARPS][ATT_MAX_GB], sm_l[ATT_WARPS][ATT_MAX_GB];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int split = blockIdx.x, g = blockIdx.y / p.n_hblocks, hb = blockIdx.y % p.n_hblocks, t = blockIdx.z;
  const int h_first = g * p.group + hb * p.heads_per_block;
  const int gb = min(p.heads_per_block, p.group - hb * p.heads_per_block);
  const int pos = p.pos[t];
  const int start = p.window > 0 && pos - p.window + 1 > 0 ? pos - p.window + 1 : 0;
  const int p_lo = max(start, split * p.chunk), p_hi = min(pos + 1, (split + 1) * p.chunk);
  const int32_t *table = p.block_table + (size_t)p.slot[t] * p.max_blocks;
  const int Dh = p.Dh, bs = p.block_size;

  float q[ATT_MAX_GB][ATT_MAX_EPL], acc[ATT_MAX_GB][ATT_MAX_EPL], m[ATT_MAX_GB], l[ATT_MAX_GB];
#pragma unroll
  for (int j = 0; j < GB; j++) {
    uint32_t qr[ATT_MAX_EPL / 2];
    if (j < gb) {
      att_load(p.q + (size_t)t * p.ldq + (size_t)(h_first + j) * Dh, lane, Dh, 0, EPL, qr);
    } else {
#pragma unroll
      for (int e = 0; e < EPL / 2; e++) qr[e] = 0u;
    }
#pragma unroll
    for (int e = 0; e < EPL; e++) {
      q[j][e] = att_elem(qr, e);
      acc[j][e] = 0.0f;
    }
    m[j] = -INFINITY;
    l[j] = 0.0f;
  }

  for (int p0 = p_lo + warp; p0 < p_hi; p0 += 2 * ATT_WARPS) {
    const int p1 = p0 + ATT_WARPS;
    const bool two = p1 < p_hi;
    uint32_t k0[ATT_MAX_EPL / 2], v0[ATT_MAX_EPL / 2], k1[ATT_MAX_EPL / 2], v1[ATT_MAX_EPL / 2];
    const size_t r0 = (((size_t)table[p0 / bs] * p.Hkv + g) * bs + p0 % bs) * Dh;
    att_load(p.k_cache + r0, lane, Dh, p.kv_vec, EPL, k0);
    att_load(p.v_cache + r0, lane, Dh, p.kv_vec, EPL, v0);
    if (two) {
      const size_t r1 = (((size_t)table[p1 / bs] * p.Hkv + g) * bs + p1 % bs) * Dh;
      att_load(p.k_cache + r1, lane, Dh, p.kv_vec, EPL, k1);
      att_load(p.v_cache + r1, lane, Dh, p.kv_vec, EPL, v1);
    } else {
#pragma unroll
      for (int e = 0; e < EPL / 2; e++) k1[e] = v1[e] = 0u;
    }
    att_update(k0, v0, q, m, l, acc, gb, p.scale, EPL, GB);
    if (two) att_update(k1, v1, q, m, l, acc, gb, p.scale, EPL, GB);
  }

  /* merge the four warps */
#pragma unroll
  for (int j = 0; j < GB; j++) {
    if (j < gb) {
#pragma unroll
      for (int e = 0; e < EPL; e++) {
        const int d = lane * EPL + e;
        if (d < Dh) sm_acc[warp][j * Dh + d] = acc[j][e];
      }
      if (lane == 0) {
        sm_m[warp][j] = m[j];
        sm_l[warp][j] = l[j];
      }
    }
  }
  __syncthreads();
  for (int i = threadIdx.x; i < gb * Dh; i += ATT_THREADS) {
    const int j = i / Dh, d = i % Dh, h = h_first + j;
    float M = -INFINITY;
#pragma unroll
    for (int w = 0; w < ATT_WARPS; w++) M = fmaxf(M, sm_m[w][j]);
    float A = 0.0f, L = 0.0f;
    if (M != -INFINITY) {
#pragma unroll
      for (int w = 0; w < ATT_WARPS; w++) {
        const float sc = __expf(sm_m[w][j] - M);
        A = fmaf(sc, sm_acc[w][j * Dh + d], A);
        L = fmaf(sc, sm_l[w][j], L);
      }
    }
    if (p.n_splits == 1) {
      p.out[(size_t)t * p.Hq * Dh + (size_t)h * Dh + d] = tpd_f32_bf16(L > 0.0f ? A / L : 0.0f);
    } else {
      float *pp = p.part + (((size_t)t * p.Hq + h) * p.n_splits + split) * (size_t)(Dh + 2);
      pp[d] = A;
      if (d == 0) {
        pp[Dh] = M;
        pp[Dh + 1] = L;
      }
    }
  }
}

#define ATT_KERNEL(name, EPL, GB) \
  static __global__ void __launch_bounds__(ATT_THREADS) name(const attn_params p) { attn_body(p, EPL, GB); }

ATT_KERNEL(attn_dh64, 2, 16)
ATT_KERNEL(attn_dh128, 4, 8)
ATT_KERNEL(attn_dh256, 8, 4)
ATT_KERNEL(attn_dh512, 16, 2)

/* Merges the n_splits partials of one (token, head) into the bf16 output. */
static __global__ void __launch_bounds__(ATT_THREADS) attn_combine(const attn_params p) {
  const int h = blockIdx.x, t = blockIdx.y, S = p.n_splits, stride = p.Dh + 2;
  const float *pp = p.part + ((size_t)t * p.Hq + h) * (size_t)S * stride;
  float M = -INFINITY;
  for (int s = 0; s < S; s++) M = fmaxf(M, pp[(size_t)s * stride + p.Dh]);
  float L = 0.0f;
  if (M != -INFINITY)
    for (int s = 0; s < S; s++) L = fmaf(__expf(pp[(size_t)s * stride + p.Dh] - M), pp[(size_t)s * stride + p.Dh + 1], L);
  for (int d = threadIdx.x; d < p.Dh; d += ATT_THREADS) {
    float A = 0.0f;
    if (M != -INFINITY)
      for (int s = 0; s < S; s++) A = fmaf(__expf(pp[(size_t)s * stride + p.Dh] - M), pp[(size_t)s * stride + d], A);
    p.out[(size_t)t * p.Hq * p.Dh + (size_t)h * p.Dh + d] = tpd_f32_bf16(L > 0.0f ? A / L : 0.0f);
  }
}

/* ------------------------------------------------------------------ */

extern "C" tpd_status tpd_cuda_attention(tpd_backend *be, const tpd_attention_args *a) {
  tpd_cuda *c = (tpd_cuda *)be->impl;
  if (!a || !a->meta || !a->q || !a->k_cache || !a->v_cache || !a->out)
    return TPD_FAIL(TPD_ERR_ARG, "cuda attention: meta, q, both caches and out are required");
  const tpd_step_meta *mt = a->meta;
  const int Hq = a->n_q_heads, Hkv = a->n_kv_heads, Dh = a->head_dim;
  if (Dh <= 0 || Dh > TPD_MAX_HEAD_DIM || Hq <= 0 || Hkv <= 0 || Hq % Hkv || mt->block_size <= 0 || mt->T < 0 ||
      mt->T > 65535 || mt->max_ctx < 0 || a->ldq < Hq * Dh || a->window < 0)
    return TPD_FAIL(TPD_ERR_ARG,
                    "cuda attention: head_dim %d (<= %d), heads %d/%d (Hkv | Hq), block_size %d, T %d (<= 65535), "
                    "max_ctx %d, ldq %d, window %d",
                    Dh, TPD_MAX_HEAD_DIM, Hq, Hkv, mt->block_size, mt->T, mt->max_ctx, a->ldq, a->window);
  if (mt->T == 0) return TPD_OK;
  const int epl = Dh <= 64 ? 2 : Dh <= 128 ? 4 : Dh <= 256 ? 8 : 16;
  const int gb_max = ATT_ACC / epl;
  attn_params p;
  p.q = (const uint16_t *)a->q;
  p.ldq = a->ldq;
  p.k_cache = (const uint16_t *)a->k_cache;
  p.v_cache = (const uint16_t *)a->v_cache;
  p.out = (uint16_t *)a->out;
  p.pos = mt->pos;
  p.slot = mt->slot;
  p.block_table = mt->block_table;
  p.max_blocks = mt->max_blocks;
  p.block_size = mt->block_size;
  p.Hq = Hq;
  p.Hkv = Hkv;
  p.Dh = Dh;
  p.group = Hq / Hkv;
  p.heads_per_block = p.group < gb_max ? p.group : gb_max;
  p.n_hblocks = (p.group + p.heads_per_block - 1) / p.heads_per_block;
  p.window = a->window;
  p.scale = a->scale;
  p.kv_vec = Dh % (epl < 8 ? epl : 8) == 0 && tpd_aligned16(a->k_cache) && tpd_aligned16(a->v_cache);
  /* Enough blocks for ~4 per SM: split the context when tokens x heads alone
   * are fewer; chunks of at least 64 positions. */
  const long base = (long)mt->T * Hkv * p.n_hblocks, target = 4L * c->n_sm;
  const long want = base >= target ? 1 : (target + base - 1) / base;
  const int ctx = mt->max_ctx > 0 ? mt->max_ctx : 1;
  long chunk = (ctx + want - 1) / want;
  chunk = (chunk + ATT_MIN_CHUNK - 1) / ATT_MIN_CHUNK * ATT_MIN_CHUNK;
  p.chunk = (int)chunk;
  p.n_splits = (int)((ctx + chunk - 1) / chunk);
  p.part = NULL;
  if (p.n_splits > 1) {
    const size_t need = (size_t)mt->T * Hq * p.n_splits * (size_t)(Dh + 2) * sizeof(float);
    TPD_TRY(tpd_cuda_reserve(c, &c->att_ws, &c->att_ws_bytes, need, "attention partials"));
    p.part = (float *)c->att_ws;
  }
  const dim3 grid((unsigned)p.n_splits, (unsigned)(Hkv * p.n_hblocks), (unsigned)mt->T);
  TPD_DEBUG("attention T=%d Hq=%d Hkv=%d Dh=%d max_ctx=%d: grid %u x %u x %u, chunk %d, %d head(s) per block",
            mt->T, Hq, Hkv, Dh, mt->max_ctx, grid.x, grid.y, grid.z, p.chunk, p.heads_per_block);
  switch (epl) {
    case 2: attn_dh64<<<grid, ATT_THREADS, 0, c->stream>>>(p); break;
    case 4: attn_dh128<<<grid, ATT_THREADS, 0, c->stream>>>(p); break;
    case 8: attn_dh256<<<grid, ATT_THREADS, 0, c->stream>>>(p); break;
    default: attn_dh512<<<grid, ATT_THREADS, 0, c->stream>>>(p); break;
  }
  TPD_CUDA_CHECK_LAUNCH("attention kernel");
  if (p.n_splits > 1) {
    attn_combine<<<dim3((unsigned)Hq, (unsigned)mt->T), ATT_THREADS, 0, c->stream>>>(p);
    TPD_CUDA_CHECK_LAUNCH("attn_combine");
  }
  return TPD_OK;
}
