/* How the CUDA attention (attention.cu) cuts each token's context into
 * splits.  Plain C, usable from the host code, the kernels and the tests
 * (tests/gpu/test_gpu_ops.c checks these very functions).
 *
 * Work unit: TPD_ATT_CHUNK positions.  A launch has `slots` split blocks per
 * (token, head block), fixed by the step's shape and the SM count (never by
 * device data, so the launch can be captured in a graph and replayed at any
 * live length).  At run time each token's live range [start, pos] (n_pos
 * positions) is cut into
 *   n_live = min(slots, ceil(n_pos / TPD_ATT_CHUNK))
 * splits of `share` positions (the last one shorter): a split never has
 * more than TPD_ATT_CHUNK positions until every slot is busy, and slots past
 * n_live exit at once.  The combine reads n_live partials: bounded by the
 * live length, not by max_ctx.
 *
 * Why 256 positions (docs/cuda.md, "attention"): a block walks its split
 * 16 positions per round (4 warps x 4 rows, 8 row loads in flight per lane;
 * 8 positions with TPD_ATT_PP=2 and at Dh > 128); each round waits about one
 * HBM latency, so 256 positions are a chain of 16 dependent rounds (32).
 * The fixed cost per split (q load, the 4-warp merge, a partial of
 * GB x (Dh + 2) floats written and read once more by the combine) is ~8 KB
 * against 128 KB of K/V read at Dh = 128: under 7 %.  512 would halve that
 * overhead but double the chain and halve the blocks a short context gets
 * (a 2000-token decode at T = 1 with 8 KV heads: 64 blocks at 256 -- half
 * of an H200's 132 SMs -- against 32 at 512); decode steps are latency-bound
 * there, so 256.  Not tuned on a GPU (the H200 runs of docs/cuda.md measured
 * the schedule within a split, not this size). */
#ifndef TPD_CUDA_ATTENTION_SPLIT_H
#define TPD_CUDA_ATTENTION_SPLIT_H

#ifdef __CUDACC__
#define TPD_ATT_HD __host__ __device__
#else
#define TPD_ATT_HD
#endif

#define TPD_ATT_CHUNK 256   /* positions per split while slots remain */
#define TPD_ATT_STEP 8      /* splits are whole multiples of this many positions (4 warps x 2) */
#define TPD_ATT_SM_BLOCKS 4 /* split blocks aimed for per SM */

/* Split blocks per (token, head block) for a launch: enough for
 * TPD_ATT_SM_BLOCKS per SM, no more than max_ctx could ever need. */
static inline int tpd_att_slots(int n_sm, long tokens_x_head_blocks, int max_ctx) {
  const long base = tokens_x_head_blocks > 0 ? tokens_x_head_blocks : 1;
  const long target = (long)TPD_ATT_SM_BLOCKS * (n_sm > 0 ? n_sm : 1);
  long want = base >= target ? 1 : (target + base - 1) / base;
  const long cap = ((long)(max_ctx > 0 ? max_ctx : 1) + TPD_ATT_CHUNK - 1) / TPD_ATT_CHUNK;
  if (want > cap) want = cap;
  return (int)(want > 0 ? want : 1);
}

/* Live splits of a token whose range has n_pos >= 1 positions. */
TPD_ATT_HD static inline int tpd_att_live(int n_pos, int slots) {
  const int n = (n_pos + TPD_ATT_CHUNK - 1) / TPD_ATT_CHUNK;
  return n < 1 ? 1 : n < slots ? n : slots;
}

/* Positions per live split (a multiple of TPD_ATT_STEP; the last split may
 * have fewer, or none). */
TPD_ATT_HD static inline int tpd_att_share(int n_pos, int n_live) {
  const int s = (n_pos + n_live - 1) / n_live;
  return (s + TPD_ATT_STEP - 1) / TPD_ATT_STEP * TPD_ATT_STEP;
}

#endif
