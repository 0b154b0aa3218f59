/* test_gpu_ops, rope + KV append and attention against the CPU twin, over a
 * paged KV cache whose unused block-table entries point far outside the pool:
 * decode, prefill and mixed steps, GQA groups 1 to 8, sliding windows, live
 * lengths around the split size at a long max_ctx, graph replays of one
 * capture at growing live lengths; and the split plan on its own (the plan
 * of the checks: test_gpu_ops.c). */
#include "kernels/cuda/attention_split.h"
#include "tests/gpu/test_gpu_ops.h"

/* ------------------------------------------------------------------ */
/* rope + KV append, attention                                         */

/* The KV block table of n_slots sequences with room for max_ctx positions,
 * backed by physical blocks only for each slot's live[s] positions (a random
 * permutation of them); every other entry holds POISON_BLOCK, an index far
 * past the pool, so a kernel that reads a position it must not touch
 * faults instead of reading plausible data. */
#define POISON_BLOCK 0x3fffffff
typedef struct {
  int n_slots, max_blocks, block_size, n_blocks;
  int32_t *table; /* [n_slots, max_blocks] */
} kv_layout;

static kv_layout make_layout(int n_slots, int max_ctx, int block_size, const int *live) {
  kv_layout k;
  k.n_slots = n_slots;
  k.block_size = block_size;
  k.max_blocks = (max_ctx + block_size - 1) / block_size;
  k.n_blocks = 0;
  for (int s = 0; s < n_slots; s++) k.n_blocks += (live[s] + block_size - 1) / block_size;
  int32_t *perm = tu_malloc(sizeof(int32_t) * (size_t)(k.n_blocks > 0 ? k.n_blocks : 1));
  for (int i = 0; i < k.n_blocks; i++) perm[i] = i;
  for (int i = k.n_blocks - 1; i > 0; i--) {
    const int j = tu_int(0, i);
    const int32_t t = perm[i];
    perm[i] = perm[j];
    perm[j] = t;
  }
  k.table = tu_malloc(sizeof(int32_t) * (size_t)n_slots * k.max_blocks);
  int next = 0;
  for (int s = 0; s < n_slots; s++)
    for (int b = 0; b < k.max_blocks; b++)
      k.table[(size_t)s * k.max_blocks + b] = b < (live[s] + block_size - 1) / block_size ? perm[next++] : POISON_BLOCK;
  free(perm);
  return k;
}

/* live length per slot: 1 + the largest position a token of that slot has */
static void live_of(int T, const int32_t *pos, const int32_t *slot, int n_slots, int *live) {
  for (int s = 0; s < n_slots; s++) live[s] = 0;
  for (int t = 0; t < T; t++)
    if (pos[t] + 1 > live[slot[t]]) live[slot[t]] = pos[t] + 1;
}

static int32_t *dev_ints(tpd_backend *gpu, const int32_t *h, size_t n) {
  void *d = NULL;
  TU_TRY(gpu->ops->alloc(gpu, n * sizeof(int32_t), &d));
  TU_TRY(gpu->ops->upload(gpu, d, h, n * sizeof(int32_t)));
  return (int32_t *)d;
}

static size_t cache_index(const kv_layout *k, int Hkv, int Dh, int slot, int pos, int h) {
  const int blk = k->table[(size_t)slot * k->max_blocks + pos / k->block_size];
  return (((size_t)blk * Hkv + h) * k->block_size + pos % k->block_size) * Dh;
}

static void test_rope(tpd_backend *cpu, tpd_backend *gpu, int Hq, int Hkv, int Dh, int bs, int T, const int32_t *pos,
                      const int32_t *slot) {
  const tpd_dtype act = gpu->ops->act_dtype;
  int max_ctx = 0, live[4];
  for (int t = 0; t < T; t++)
    if (pos[t] + 1 > max_ctx) max_ctx = pos[t] + 1;
  live_of(T, pos, slot, 4, live);
  kv_layout k = make_layout(4, max_ctx, bs, live);
  const int W = (Hq + 2 * Hkv) * Dh;
  const size_t nq = (size_t)T * W, nc = (size_t)k.n_blocks * Hkv * bs * Dh;
  float *qkv = tu_malloc(nq * 4), *kc = tu_malloc(nc * 4), *vc = tu_malloc(nc * 4);
  act_fill(gpu, qkv, nq, 2.0f);
  act_fill(gpu, kc, nc, 1.0f);
  act_fill(gpu, vc, nc, 1.0f);
  for (int t = 0; t < T; t++) /* the rows rope_kv must write start as NaN */
    for (int h = 0; h < Hkv; h++)
      for (int i = 0; i < Dh; i++) {
        const size_t at = cache_index(&k, Hkv, Dh, slot[t], pos[t], h) + i;
        kc[at] = vc[at] = NAN;
      }
  double inv_freq[TPD_MAX_HEAD_DIM / 2];
  for (int i = 0; i < Dh / 2; i++) inv_freq[i] = pow(500000.0, -2.0 * i / Dh);
  void *dqkv = tu_dev_from(gpu, qkv, nq, act), *dkc = tu_dev_from(gpu, kc, nc, act), *dvc = tu_dev_from(gpu, vc, nc, act);
  double *dinv = NULL;
  TU_TRY(gpu->ops->alloc(gpu, sizeof(double) * (size_t)(Dh / 2), (void **)&dinv));
  TU_TRY(gpu->ops->upload(gpu, dinv, inv_freq, sizeof(double) * (size_t)(Dh / 2)));
  int32_t *dpos = dev_ints(gpu, pos, (size_t)T), *dslot = dev_ints(gpu, slot, (size_t)T),
          *dtab = dev_ints(gpu, k.table, (size_t)k.n_slots * k.max_blocks);
  tpd_step_meta mc = {T, pos, slot, k.table, k.max_blocks, bs, max_ctx};
  tpd_rope_kv_args ac = {&mc, Hq, Hkv, Dh, qkv, inv_freq, kc, vc};
  TU_TRY(cpu->ops->rope_kv(cpu, &ac));
  tpd_step_meta mg = {T, dpos, dslot, dtab, k.max_blocks, bs, max_ctx};
  tpd_rope_kv_args ag = {&mg, Hq, Hkv, Dh, dqkv, dinv, dkc, dvc};
  TU_TRY(gpu->ops->rope_kv(gpu, &ag));
  float *qg = tu_host_from(gpu, dqkv, nq, act), *kg = tu_host_from(gpu, dkc, nc, act), *vg = tu_host_from(gpu, dvc, nc, act);
  char what[160];
  snprintf(what, sizeof what, "%s rope_kv Hq=%d Hkv=%d Dh=%d T=%d: qkv", act_name(gpu), Hq, Hkv, Dh, T);
  tu_report(what, tu_compare(qg, W, qkv, W, T, W), tol_of(gpu));
  snprintf(what, sizeof what, "%s rope_kv Hq=%d Hkv=%d Dh=%d T=%d: k cache", act_name(gpu), Hq, Hkv, Dh, T);
  tu_report(what, tu_compare(kg, (int)nc, kc, (int)nc, 1, (int)nc), tol_of(gpu));
  snprintf(what, sizeof what, "%s rope_kv Hq=%d Hkv=%d Dh=%d T=%d: v cache", act_name(gpu), Hq, Hkv, Dh, T);
  tu_report(what, tu_compare(vg, (int)nc, vc, (int)nc, 1, (int)nc), tol_of(gpu));
  gpu->ops->free(gpu, dqkv), gpu->ops->free(gpu, dkc), gpu->ops->free(gpu, dvc), gpu->ops->free(gpu, dinv);
  gpu->ops->free(gpu, dpos), gpu->ops->free(gpu, dslot), gpu->ops->free(gpu, dtab);
  free(qkv), free(kc), free(vc), free(qg), free(kg), free(vg), free(k.table);
}

/* One attention call's buffers: random q (in a qkv row of width ldq), K and
 * V caches on the host (f32) and on the device (the activation dtype), the
 * device output poisoned, the step's positions, slots and block table on the
 * device; ref receives the CPU twin's output [T, O]. */
typedef struct {
  int ldq, O;
  size_t nq, nc;
  float *q, *kc, *vc, *ref;
  void *dq, *dkc, *dvc, *dout;
  int32_t *dpos, *dslot, *dtab;
} att_bufs;

static att_bufs att_alloc(tpd_backend *gpu, const kv_layout *k, int Hq, int Hkv, int Dh, int T, const int32_t *pos,
                          const int32_t *slot) {
  const tpd_dtype act = gpu->ops->act_dtype;
  att_bufs b;
  b.ldq = (Hq + 2 * Hkv) * Dh, b.O = Hq * Dh;
  b.nq = (size_t)T * b.ldq, b.nc = (size_t)k->n_blocks * Hkv * k->block_size * Dh;
  b.q = tu_malloc(b.nq * 4), b.kc = tu_malloc(b.nc * 4), b.vc = tu_malloc(b.nc * 4);
  b.ref = tu_malloc((size_t)T * b.O * 4);
  act_fill(gpu, b.q, b.nq, 1.0f);
  act_fill(gpu, b.kc, b.nc, 1.0f);
  act_fill(gpu, b.vc, b.nc, 1.0f);
  b.dq = tu_dev_from(gpu, b.q, b.nq, act), b.dkc = tu_dev_from(gpu, b.kc, b.nc, act);
  b.dvc = tu_dev_from(gpu, b.vc, b.nc, act);
  b.dout = tu_dev_poison(gpu, (size_t)T * b.O * tpd_dtype_size(act));
  b.dpos = dev_ints(gpu, pos, (size_t)T), b.dslot = dev_ints(gpu, slot, (size_t)T);
  b.dtab = dev_ints(gpu, k->table, (size_t)k->n_slots * k->max_blocks);
  return b;
}

static void att_free(tpd_backend *gpu, att_bufs *b) {
  gpu->ops->free(gpu, b->dq), gpu->ops->free(gpu, b->dkc), gpu->ops->free(gpu, b->dvc), gpu->ops->free(gpu, b->dout);
  gpu->ops->free(gpu, b->dpos), gpu->ops->free(gpu, b->dslot), gpu->ops->free(gpu, b->dtab);
  free(b->q), free(b->kc), free(b->vc), free(b->ref);
}

/* Attention of T tokens (pos, slot) with meta.max_ctx = max_ctx (0: the
 * largest live length, as an eager engine step passes). */
static void test_attention(tpd_backend *cpu, tpd_backend *gpu, const char *label, int Hq, int Hkv, int Dh, int bs,
                           int window, int T, const int32_t *pos, const int32_t *slot, int max_ctx) {
  const tpd_dtype act = gpu->ops->act_dtype;
  int live[4], longest = 0;
  live_of(T, pos, slot, 4, live);
  for (int s = 0; s < 4; s++)
    if (live[s] > longest) longest = live[s];
  if (max_ctx <= 0) max_ctx = longest;
  kv_layout k = make_layout(4, max_ctx, bs, live);
  att_bufs b = att_alloc(gpu, &k, Hq, Hkv, Dh, T, pos, slot);
  const float scale = (float)(1.0 / sqrt((double)Dh));
  tpd_step_meta mc = {T, pos, slot, k.table, k.max_blocks, bs, max_ctx};
  tpd_attention_args ac = {&mc, Hq, Hkv, Dh, b.q, b.ldq, b.kc, b.vc, b.ref, window, scale};
  TU_TRY(cpu->ops->attention(cpu, &ac));
  tpd_step_meta mg = {T, b.dpos, b.dslot, b.dtab, k.max_blocks, bs, max_ctx};
  tpd_attention_args ag = {&mg, Hq, Hkv, Dh, b.dq, b.ldq, b.dkc, b.dvc, b.dout, window, scale};
  TU_TRY(gpu->ops->attention(gpu, &ag));
  float *out = tu_host_from(gpu, b.dout, (size_t)T * b.O, act);
  char what[200];
  snprintf(what, sizeof what, "%s attention %s Hq=%d Hkv=%d Dh=%d bs=%d win=%d T=%d live<=%d max_ctx=%d", act_name(gpu),
           label, Hq, Hkv, Dh, bs, window, T, longest, max_ctx);
  tu_report(what, tu_compare(out, b.O, b.ref, b.O, T, b.O), tol_of(gpu));
  att_free(gpu, &b);
  free(out), free(k.table);
}

/* one sequence's prompt: positions p0 .. p0 + n - 1 in slot s */
static int add_run(int32_t *pos, int32_t *slot, int T, int p0, int n, int s) {
  for (int i = 0; i < n; i++) {
    pos[T + i] = p0 + i;
    slot[T + i] = s;
  }
  return T + n;
}

/* The split plan (attention_split.h), checked on its own: bug 5 was a plan
 * sized from max_ctx, under which a 2000-position context at max_ctx 131072
 * landed in one split (one block per KV head walking all 2000 positions,
 * 250 dependent iterations). */
void test_attention_plan(void) {
  {
    const int slots = tpd_att_slots(132, 1L * 8 * 1, 131072); /* T = 1, 8 KV heads, one head block */
    const int n_live = tpd_att_live(2000, slots), share = tpd_att_share(2000, n_live);
    char what[200];
    snprintf(what, sizeof what,
             "attention plan, 132 SMs, T=1, 8 KV heads, max_ctx 131072, live 2000: %d slots, %d live splits of %d "
             "positions (<= %d)",
             slots, n_live, share, TPD_ATT_CHUNK);
    tu_expect(share <= TPD_ATT_CHUNK && n_live == 8 && n_live * share >= 2000, what);
  }
  /* a sweep: every live length is covered, splits stay balanced and short
   * while slots remain, and never exceed the slots */
  const int sms[] = {1, 7, 132}, maxc[] = {1, 255, 256, 257, 4096, 131072};
  const long bases[] = {1, 3, 8, 64, 1000};
  long bad = 0, cases = 0;
  for (size_t a = 0; a < sizeof sms / sizeof sms[0]; a++)
    for (size_t b = 0; b < sizeof bases / sizeof bases[0]; b++)
      for (size_t c = 0; c < sizeof maxc / sizeof maxc[0]; c++) {
        const int slots = tpd_att_slots(sms[a], bases[b], maxc[c]);
        if (slots < 1 || (long)(slots - 1) * TPD_ATT_CHUNK >= (long)maxc[c] + TPD_ATT_CHUNK) bad++;
        for (int n = 1; n <= maxc[c]; n += n < 600 ? 1 : 997) {
          const int live = tpd_att_live(n, slots), share = tpd_att_share(n, live);
          const int need = (n + TPD_ATT_CHUNK - 1) / TPD_ATT_CHUNK;
          cases++;
          if (live < 1 || live > slots || (long)live * share < n || share % TPD_ATT_STEP ||
              (need <= slots && (live != need || share > TPD_ATT_CHUNK)) || share - (n + live - 1) / live >= TPD_ATT_STEP)
            bad++;
        }
      }
  char what[160];
  snprintf(what, sizeof what, "attention plan sweep: %ld (SMs, shape, max_ctx, live) cases covered and balanced", cases);
  tu_expect(bad == 0, what);
}

/* One attention launch captured in a graph at max_ctx, replayed as the live
 * lengths grow (pos updated in device memory between replays, as the engine
 * does): each replay against the CPU twin. */
static void test_attention_graph(tpd_backend *cpu, tpd_backend *gpu) {
  const tpd_dtype act = gpu->ops->act_dtype;
  const int Hq = 4, Hkv = 2, Dh = 64, bs = 16, max_ctx = 3000, T = 2;
  const int live[4] = {max_ctx, max_ctx, 0, 0};
  kv_layout k = make_layout(2, max_ctx, bs, live);
  int32_t pos[2] = {0, 0}, slot[2] = {0, 1};
  att_bufs b = att_alloc(gpu, &k, Hq, Hkv, Dh, T, pos, slot);
  const int O = b.O;
  const float scale = (float)(1.0 / sqrt((double)Dh));
  tpd_step_meta mg = {T, b.dpos, b.dslot, b.dtab, k.max_blocks, bs, max_ctx};
  tpd_attention_args ag = {&mg, Hq, Hkv, Dh, b.dq, b.ldq, b.dkc, b.dvc, b.dout, 0, scale};
  TU_TRY(gpu->ops->attention(gpu, &ag)); /* eager once: the partials workspace is sized before the capture */
  void *graph = NULL;
  TU_TRY(gpu->ops->graph_begin(gpu));
  const tpd_status body = gpu->ops->attention(gpu, &ag);
  TU_TRY(gpu->ops->graph_end(gpu, &graph));
  TU_TRY(body);
  /* pairs of live lengths: 1, a split boundary, one past it, several splits, near max_ctx */
  const int steps[][2] = {{1, 2}, {256, 255}, {257, 512}, {513, 1000}, {2000, 1}, {2999, 3000}};
  double worst = 0;
  size_t n_nan = 0;
  for (size_t i = 0; i < sizeof steps / sizeof steps[0]; i++) {
    pos[0] = steps[i][0] - 1, pos[1] = steps[i][1] - 1;
    TU_TRY(gpu->ops->upload(gpu, b.dpos, pos, sizeof pos));
    TU_CUDA(cudaMemset(b.dout, 0xFF, (size_t)T * O * tpd_dtype_size(act)));
    TU_CUDA(cudaDeviceSynchronize());
    TU_TRY(gpu->ops->graph_launch(gpu, graph));
    float *out = tu_host_from(gpu, b.dout, (size_t)T * O, act);
    tpd_step_meta mc = {T, pos, slot, k.table, k.max_blocks, bs, max_ctx};
    tpd_attention_args ac = {&mc, Hq, Hkv, Dh, b.q, b.ldq, b.kc, b.vc, b.ref, 0, scale};
    TU_TRY(cpu->ops->attention(cpu, &ac));
    const tu_cmp c = tu_compare(out, O, b.ref, O, T, O);
    worst = tu_worst(worst, c.err);
    n_nan += c.n_nan;
    free(out);
  }
  gpu->ops->graph_destroy(gpu, graph);
  char what[200];
  snprintf(what, sizeof what, "%s attention graph at max_ctx %d replayed at live lengths 1..%d", act_name(gpu), max_ctx,
           max_ctx);
  const tu_cmp w = {worst, n_nan};
  tu_report(what, w, tol_of(gpu));
  att_free(gpu, &b);
  free(k.table);
}


/* ------------------------------------------------------------------ */

void run_attention_ops(tpd_backend *cpu, tpd_backend *gpu, int full) {
  int32_t pos[64], slot[64];
  int T;
  /* rope + KV append: decode tokens of several sequences, then a prefill run */
  T = 0;
  T = add_run(pos, slot, T, 0, 3, 1);
  T = add_run(pos, slot, T, 37, 1, 0);
  T = add_run(pos, slot, T, 130, 1, 3);
  test_rope(cpu, gpu, 8, 2, 128, 16, T, pos, slot);
  test_rope(cpu, gpu, 4, 4, 64, 8, T, pos, slot);
  test_rope(cpu, gpu, 6, 2, 80, 16, T, pos, slot);

  /* attention */
  T = 0;
  T = add_run(pos, slot, T, 5, 1, 0);
  T = add_run(pos, slot, T, 300, 1, 1);
  T = add_run(pos, slot, T, 1000, 1, 2);
  test_attention(cpu, gpu, "decode ", 8, 2, 128, 16, 0, T, pos, slot, 0);
  test_attention(cpu, gpu, "decode ", 8, 2, 128, 16, 100, T, pos, slot, 0);
  test_attention(cpu, gpu, "decode ", 12, 2, 128, 16, 0, T, pos, slot, 0); /* group 6: a short last head block */
  test_attention(cpu, gpu, "decode ", 16, 2, 256, 16, 0, T, pos, slot, 0);
  test_attention(cpu, gpu, "decode ", 2, 1, 512, 32, 0, T, pos, slot, 0);
  T = 0;
  T = add_run(pos, slot, T, 100, 20, 1);
  T = add_run(pos, slot, T, 7, 1, 3);
  test_attention(cpu, gpu, "prefill", 4, 4, 64, 16, 0, T, pos, slot, 0);
  if (full) test_attention(cpu, gpu, "prefill", 4, 4, 64, 16, 50, T, pos, slot, 0);
  test_attention(cpu, gpu, "prefill", 8, 2, 128, 16, 1, T, pos, slot, 0);
  T = 0;
  T = add_run(pos, slot, T, 0, 4, 0); /* short context: one split */
  test_attention(cpu, gpu, "prefill", 8, 2, 128, 16, 0, T, pos, slot, 0);
  T = 0;
  T = add_run(pos, slot, T, 63, 1, 0);
  T = add_run(pos, slot, T, 190, 10, 2);
  test_attention(cpu, gpu, "mixed  ", 6, 3, 80, 8, 0, T, pos, slot, 0);
  if (full) test_attention(cpu, gpu, "mixed  ", 32, 8, 64, 16, 24, T, pos, slot, 0);

  /* (max_ctx, live length) pairs around the split size (256 positions): live
   * length 1, exactly one split, one past it, two splits, and a long max_ctx
   * (a decode graph's) with short live lengths; all four in one launch, so
   * tokens with 1, 1, 2 and 8 live splits share a grid */
  T = 0;
  T = add_run(pos, slot, T, 0, 1, 0);    /* live 1 */
  T = add_run(pos, slot, T, 255, 1, 1);  /* live 256: exactly one split */
  T = add_run(pos, slot, T, 256, 1, 2);  /* live 257: one past it */
  T = add_run(pos, slot, T, 1999, 1, 3); /* live 2000 */
  test_attention(cpu, gpu, "splits ", 8, 2, 64, 16, 0, T, pos, slot, 131072);
  test_attention(cpu, gpu, "splits ", 8, 2, 64, 16, 0, T, pos, slot, 2048);
  test_attention(cpu, gpu, "splits ", 4, 4, 128, 16, 300, T, pos, slot, 131072);
  T = 0;
  T = add_run(pos, slot, T, 511, 1, 0); /* live 512: exactly two splits */
  T = add_run(pos, slot, T, 512, 1, 1); /* live 513 */
  test_attention(cpu, gpu, "splits ", 16, 2, 128, 16, 0, T, pos, slot, 513);
  test_attention(cpu, gpu, "splits ", 16, 2, 128, 16, 0, T, pos, slot, 131072);
  T = 0;
  T = add_run(pos, slot, T, 200, 64, 0); /* a prefill crossing the split boundary */
  test_attention(cpu, gpu, "splits ", 4, 2, 64, 16, 0, T, pos, slot, 4096);
  test_attention_graph(cpu, gpu);
}
