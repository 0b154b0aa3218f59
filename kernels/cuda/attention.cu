/* attention: flash-decoding over the paged KV cache, decode and prefill.
 *
 * Each token t (at position pos[t] of sequence slot[t]) attends to its own
 * sequence's positions [start, pos], start = max(0, pos - window + 1)
 * (window 0: start = 0).  That live range is cut into splits as
 * attention_split.h describes: n_live = min(slots, ceil(n_pos / 256)) splits
 * of `share` positions each, computed on the device from pos, so one launch
 * (grid sized from the step's shape, never from device data) serves every
 * live length and can be captured in a graph.
 *
 *   attn_kernel  grid (slots, Hkv * n_hblocks, T), 128 threads (4 warps).
 *                A block takes one split of one token, one KV head g and up
 *                to GB of the query heads that share it (GQA: the group's
 *                K/V rows are read once for all of them); a block whose
 *                split index is >= n_live returns at once.  Each warp walks
 *                positions warp, warp + 4, ..., PP per round (TPD_ATT_PP,
 *                2 or 4; Dh > 128: 2), all 2 PP row loads issued before
 *                the first is used, each lane holding EPL = Dh/32
 *                (rounded up to 2, 4, 8 or 16) elements of q, K, V and the
 *                fp32 output accumulator; scores are reduced with shuffles
 *                and folded in with an online softmax (running max m, sum
 *                l).  The 4 warps merge through shared memory.  With one
 *                live split the block writes the normalised output;
 *                otherwise it writes (acc, m, l) partials.
 *   attn_combine grid (Hq, T): merges the n_live partials of each (t, head)
 *                (nothing to do when n_live is 1).
 *
 * The caller must keep meta->max_ctx >= pos + 1 of every token (as for the
 * CPU twin).  Scores, softmax and accumulation are fp32; q, K, V and out are
 * in the activation dtype T (bf16, or f32 in the float32-activation mode). */
#include <math.h>
#include <stdint.h>

#include "kernels/cuda/attention_split.h"
#include "kernels/cuda/cuda_backend.h"
#include "kernels/cuda/cuda_util.h"
#include "kernels/cuda/kv_index.h"

#define ATT_WARPS 4
#define ATT_THREADS (ATT_WARPS * 32)
#define ATT_ACC 32     /* GB * EPL, accumulator floats per lane: at most this (attn_variants below) */
#define ATT_MAX_EPL 16 /* Dh <= 512 */
#define ATT_MAX_GB 16

typedef struct {
  const void *q; /* [T, ldq] */
  int ldq;
  const void *k_cache, *v_cache; /* [n_blocks, Hkv, block_size, Dh] */
  void *out;                     /* [T, Hq Dh] */
  tpd_kv_index kv;
  int Hq, Hkv, Dh, group;
  int heads_per_block, n_hblocks;
  int window;
  float scale;
  int slots;   /* split blocks per (token, head block); 1: no partials */
  float *part; /* [T][Hq][slots][Dh + 2]: acc[Dh], m, l */
  int kv_vec;  /* each lane's K/V elements can be loaded as one vector */
} attn_params;

/* A token's live range [start, pos] and its splits (attention_split.h). */
static __device__ __forceinline__ void att_range(const attn_params &p, int t, int *start, int *pos, int *n_live,
                                                 int *share) {
  *pos = p.kv.pos[t];
  *start = p.window > 0 && *pos - p.window + 1 > 0 ? *pos - p.window + 1 : 0;
  const int n_pos = *pos - *start + 1;
  *n_live = tpd_att_live(n_pos, p.slots);
  *share = tpd_att_share(n_pos, *n_live);
}

/* A lane's EPL elements [lane * EPL, lane * EPL + EPL) of a row of T, as
 * raw words (bf16: two per word, EPL / 2 words; f32: one per word); zeros
 * past Dh. */
template <typename T>
static __device__ __forceinline__ void att_load(const T *src, int lane, int Dh, int vec, const int EPL,
                                                uint32_t *out) {
  const int WORDS = EPL * (int)sizeof(T) / 4;
  const int e0 = lane * EPL;
  if (vec && e0 + EPL <= Dh) {
    if (WORDS == 1) {
      out[0] = *(const uint32_t *)(src + e0);
    } else if (WORDS == 2) {
      const uint2 t = *(const uint2 *)(src + e0);
      out[0] = t.x;
      out[1] = t.y;
    } else {
#pragma unroll
      for (int c = 0; c < WORDS / 4; c++) {
        const uint4 t = *(const uint4 *)((const char *)(src + e0) + 16 * c);
        out[4 * c + 0] = t.x;
        out[4 * c + 1] = t.y;
        out[4 * c + 2] = t.z;
        out[4 * c + 3] = t.w;
      }
    }
  } else if (sizeof(T) == 2) {
#pragma unroll
    for (int e = 0; e < EPL / 2; e++) {
      const uint32_t lo = e0 + 2 * e < Dh ? tpd_act<T>::bits(src[e0 + 2 * e]) : 0u;
      const uint32_t hi = e0 + 2 * e + 1 < Dh ? tpd_act<T>::bits(src[e0 + 2 * e + 1]) : 0u;
      out[e] = lo | (hi << 16);
    }
  } else {
#pragma unroll
    for (int e = 0; e < EPL; e++) out[e] = e0 + e < Dh ? tpd_act<T>::bits(src[e0 + e]) : 0u;
  }
}

/* Element e of the words att_load produced. */
template <typename T>
static __device__ __forceinline__ float att_elem(const uint32_t *w, const int e) {
  if (sizeof(T) == 4) return __uint_as_float(w[e]);
  return (e & 1) ? tpd_bf16_hi(w[e / 2]) : tpd_bf16_lo(w[e / 2]);
}

/* Folds one position (its K and V words) into every head's running state. */
template <typename T>
static __device__ __forceinline__ void att_update(const uint32_t *kr, const uint32_t *vr,
                                                  float (*q)[ATT_MAX_EPL], float *m, float *l,
                                                  float (*acc)[ATT_MAX_EPL], int gb, float scale, const int EPL,
                                                  const int GB) {
#pragma unroll
  for (int j = 0; j < GB; j++) {
    if (j < gb) {
      float d = 0.0f;
#pragma unroll
      for (int e = 0; e < EPL; e++) d = fmaf(q[j][e], att_elem<T>(kr, e), d);
      d = tpd_warp_sum(d) * scale;
      const float mn = fmaxf(m[j], d);
      const float corr = __expf(m[j] - mn), pe = __expf(d - mn);
      l[j] = l[j] * corr + pe;
#pragma unroll
      for (int e = 0; e < EPL; e++) acc[j][e] = fmaf(pe, att_elem<T>(vr, e), acc[j][e] * corr);
      m[j] = mn;
    }
  }
}

template <typename T, int EPL, int GB, int PP>
static __global__ void __launch_bounds__(ATT_THREADS) attn_kernel(const attn_params p) {
  static_assert(GB * EPL <= ATT_ACC && GB <= ATT_MAX_GB && EPL <= ATT_MAX_EPL, "attn_kernel: GB x EPL too large");
  __shared__ float sm_acc[ATT_WARPS][ATT_ACC * 32];
  __shared__ float sm_m[ATT_WARPS][ATT_MAX_GB], sm_l[ATT_WARPS][ATT_MAX_GB];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int split = blockIdx.x, g = blockIdx.y / p.n_hblocks, hb = blockIdx.y % p.n_hblocks, t = blockIdx.z;
  int start, pos, n_live, share;
  att_range(p, t, &start, &pos, &n_live, &share);
  if (split >= n_live) return; /* block-uniform: beyond this token's live range */
  const int h_first = g * p.group + hb * p.heads_per_block;
  const int gb = min(p.heads_per_block, p.group - hb * p.heads_per_block);
  const int p_lo = start + split * share, p_hi = min(pos + 1, start + (split + 1) * share);
  const int32_t *table = tpd_kv_blocks(p.kv, t);
  const int Dh = p.Dh, bs = p.kv.block_size;
  const T *qrow = (const T *)p.q + (size_t)t * p.ldq;
  const T *kc = (const T *)p.k_cache, *vc = (const T *)p.v_cache;

  float q[ATT_MAX_GB][ATT_MAX_EPL], acc[ATT_MAX_GB][ATT_MAX_EPL], m[ATT_MAX_GB], l[ATT_MAX_GB];
#pragma unroll
  for (int j = 0; j < GB; j++) {
    uint32_t qr[ATT_MAX_EPL];
    if (j < gb) {
      att_load<T>(qrow + (size_t)(h_first + j) * Dh, lane, Dh, 0, EPL, qr);
    } else {
#pragma unroll
      for (int e = 0; e < EPL; e++) qr[e] = 0u;
    }
#pragma unroll
    for (int e = 0; e < EPL; e++) {
      q[j][e] = att_elem<T>(qr, e);
      acc[j][e] = 0.0f;
    }
    m[j] = -INFINITY;
    l[j] = 0.0f;
  }

  /* PP positions per warp and round: all their K and V loads are issued
   * before the first is used (warp w takes p_lo + w, + w + 4, ...) */
  for (int p0 = p_lo + warp; p0 < p_hi; p0 += PP * ATT_WARPS) {
    uint32_t kr[PP][EPL], vr[PP][EPL];
#pragma unroll
    for (int u = 0; u < PP; u++) {
      const int pu = p0 + u * ATT_WARPS;
      if (pu < p_hi) {
        const size_t r = tpd_kv_row(table[pu / bs], g, pu % bs, p.Hkv, bs, Dh);
        att_load<T>(kc + r, lane, Dh, p.kv_vec, EPL, kr[u]);
        att_load<T>(vc + r, lane, Dh, p.kv_vec, EPL, vr[u]);
      } else {
#pragma unroll
        for (int e = 0; e < EPL; e++) kr[u][e] = vr[u][e] = 0u;
      }
    }
#pragma unroll
    for (int u = 0; u < PP; u++)
      if (p0 + u * ATT_WARPS < p_hi) att_update<T>(kr[u], vr[u], q, m, l, acc, gb, p.scale, EPL, GB);
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
    if (n_live == 1) {
      ((T *)p.out)[(size_t)t * p.Hq * Dh + (size_t)h * Dh + d] = tpd_act<T>::put(L > 0.0f ? A / L : 0.0f);
    } else {
      float *pp = p.part + (((size_t)t * p.Hq + h) * p.slots + split) * (size_t)(Dh + 2);
      pp[d] = A;
      if (d == 0) {
        pp[Dh] = M;
        pp[Dh + 1] = L;
      }
    }
  }
}

/* Merges the n_live partials of one (token, head) into the output. */
template <typename T>
static __global__ void __launch_bounds__(ATT_THREADS) attn_combine(const attn_params p) {
  const int h = blockIdx.x, t = blockIdx.y, stride = p.Dh + 2;
  int start, pos, S, share;
  att_range(p, t, &start, &pos, &S, &share);
  if (S == 1) return; /* attn_kernel wrote this token's output */
  const float *pp = p.part + ((size_t)t * p.Hq + h) * (size_t)p.slots * stride;
  float M = -INFINITY;
  for (int s = 0; s < S; s++) M = fmaxf(M, pp[(size_t)s * stride + p.Dh]);
  float L = 0.0f;
  if (M != -INFINITY)
    for (int s = 0; s < S; s++) L = fmaf(__expf(pp[(size_t)s * stride + p.Dh] - M), pp[(size_t)s * stride + p.Dh + 1], L);
  for (int d = threadIdx.x; d < p.Dh; d += ATT_THREADS) {
    float A = 0.0f;
    if (M != -INFINITY)
      for (int s = 0; s < S; s++) A = fmaf(__expf(pp[(size_t)s * stride + p.Dh] - M), pp[(size_t)s * stride + d], A);
    ((T *)p.out)[(size_t)t * p.Hq * p.Dh + (size_t)h * p.Dh + d] = tpd_act<T>::put(L > 0.0f ? A / L : 0.0f);
  }
}

/* ------------------------------------------------------------------ */

typedef void (*attn_fn)(const attn_params);

/* [pp][f32][epl index]: the kernels for Dh <= 64, 128, 256, 512, with
 * PP = 2 or 4 positions per warp and round (TPD_ATT_PP); the Dh 256 and 512
 * variants keep 2 (their rows would not fit in registers four at a time).
 * GB is the most query heads a kernel holds without a spill in
 * ptxas's report: f32 K/V rows take twice the registers of bf16 ones (with
 * the bf16 GB the f32 Dh-256 one spilled), and at PP = 4 bf16 Dh 128 and
 * f32 Dh 64 spilled with 8, so they hold 4. */
typedef struct {
  attn_fn fn;
  int gb; /* the kernel's GB */
  const char *name;
} attn_variant;
/* DH: the largest head dim the kernel takes (32 x EPL), for its name */
#define ATT_V(T, TN, EPL, GB, PP, DH) {attn_kernel<T, EPL, GB, PP>, GB, "attn_kernel<" TN ", dh" #DH ", pp" #PP ">"}
static const attn_variant attn_variants[2][2][4] = {
    {{ATT_V(uint16_t, "bf16", 2, 16, 2, 64), ATT_V(uint16_t, "bf16", 4, 8, 2, 128),
      ATT_V(uint16_t, "bf16", 8, 4, 2, 256), ATT_V(uint16_t, "bf16", 16, 2, 2, 512)},
     {ATT_V(float, "f32", 2, 8, 2, 64), ATT_V(float, "f32", 4, 4, 2, 128), ATT_V(float, "f32", 8, 2, 2, 256),
      ATT_V(float, "f32", 16, 1, 2, 512)}},
    {{ATT_V(uint16_t, "bf16", 2, 16, 4, 64), ATT_V(uint16_t, "bf16", 4, 4, 4, 128),
      ATT_V(uint16_t, "bf16", 8, 4, 2, 256), ATT_V(uint16_t, "bf16", 16, 2, 2, 512)},
     {ATT_V(float, "f32", 2, 4, 4, 64), ATT_V(float, "f32", 4, 4, 4, 128), ATT_V(float, "f32", 8, 2, 2, 256),
      ATT_V(float, "f32", 16, 1, 2, 512)}}};
#undef ATT_V

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
  const int f32 = c->act == TPD_F32;
  const int ei = Dh <= 64 ? 0 : Dh <= 128 ? 1 : Dh <= 256 ? 2 : 3, epl = 2 << ei;
  const attn_variant *av = &attn_variants[c->att_pp == 4][f32][ei];
  const int gb_max = av->gb;
  attn_params p;
  p.q = a->q;
  p.ldq = a->ldq;
  p.k_cache = a->k_cache;
  p.v_cache = a->v_cache;
  p.out = a->out;
  p.kv = tpd_kv_index_of(mt);
  p.Hq = Hq;
  p.Hkv = Hkv;
  p.Dh = Dh;
  p.group = Hq / Hkv;
  p.heads_per_block = p.group < gb_max ? p.group : gb_max;
  p.n_hblocks = (p.group + p.heads_per_block - 1) / p.heads_per_block;
  p.window = a->window;
  p.scale = a->scale;
  /* a lane's elements load as one vector when every row keeps them aligned */
  const int vec_elems = f32 ? (epl < 4 ? epl : 4) : (epl < 8 ? epl : 8);
  p.kv_vec = Dh % vec_elems == 0 && tpd_aligned16(a->k_cache) && tpd_aligned16(a->v_cache);
  /* split slots from the shape and the SM count only (graph-safe); the live
   * splits of each token are worked out on the device (attention_split.h) */
  p.slots = tpd_att_slots(c->n_sm, (long)mt->T * Hkv * p.n_hblocks, mt->max_ctx);
  p.part = NULL;
  if (p.slots > 1) {
    const size_t need = (size_t)mt->T * Hq * p.slots * (size_t)(Dh + 2) * sizeof(float);
    TPD_TRY(tpd_cuda_reserve(c, &c->att_ws, &c->att_ws_bytes, need, "attention partials"));
    p.part = (float *)c->att_ws;
  }
  const dim3 grid((unsigned)p.slots, (unsigned)(Hkv * p.n_hblocks), (unsigned)mt->T);
  TPD_DEBUG("attention T=%d Hq=%d Hkv=%d Dh=%d max_ctx=%d (%s): grid %u x %u x %u, splits of >= %d positions, "
            "%d head(s) per block",
            mt->T, Hq, Hkv, Dh, mt->max_ctx, f32 ? "f32" : "bf16", grid.x, grid.y, grid.z, TPD_ATT_CHUNK,
            p.heads_per_block);
  const attn_fn k = av->fn;
  k<<<grid, ATT_THREADS, 0, c->stream>>>(p);
  TPD_CUDA_CHECK_LAUNCH(c, av->name);
  if (p.slots > 1) {
    const attn_fn comb = f32 ? attn_combine<float> : attn_combine<uint16_t>;
    comb<<<dim3((unsigned)Hq, (unsigned)mt->T), ATT_THREADS, 0, c->stream>>>(p);
    TPD_CUDA_CHECK_LAUNCH(c, f32 ? "attn_combine<f32>" : "attn_combine<bf16>");
  }
  return TPD_OK;
}
