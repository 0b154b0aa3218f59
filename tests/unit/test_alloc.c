/* The memory plan (docs/architecture.md, "Memory plan"), at TP = 1 and
 * under mpirun at TP = 2:
 *
 * 1. Decode steps allocate nothing.  The engine (CPU backend, a synthetic
 *    model) prefills random prompts, then runs decode steps at batch 1 and 3,
 *    greedy and sampled (temperature with top-p, top-k), with and without
 *    gathered logits, and at TP = 2 also with overlap on (started
 *    all-reduces, chunked rows).  Around every decode step the allocation
 *    counters (alloc_count.c) are open: tpdecode's own malloc / calloc /
 *    realloc / posix_memalign calls must be 0; with glibc, at TP = 1, so must
 *    every allocation in the process (libc's included: glibc's qsort mallocs
 *    a merge buffer); at TP = 2 the process count includes MPI's and is only
 *    printed.  First the counters prove they can see a malloc of the test
 *    and one inside libc.
 * 2. The plan is what was allocated: while the engine is created, the sizes
 *    of tpdecode's allocations are recorded, and the plan the engine reports
 *    (tpd_engine_info, the numbers TPD_LOG=info prints) must appear among
 *    them -- the host arena as one calloc, the step and KV arenas as one
 *    aligned allocation each, the CPU backend's workspace as its two -- and
 *    the KV, weight and activation numbers must match what the model's shape
 *    implies, computed here independently. */
#include <sys/stat.h>
#include <unistd.h>

#include "alloc_count.h"
#include "kernels/cpu/attention.h"
#include "kernels/cpu/cpu_backend.h"
#include "launch/tools/synth.h"
#include "runtime/engine/tpdecode.h"
#include "testutil.h"

enum { N_DECODE = 10, MAX_SEQS = 3, MAX_CTX = 96, BLOCK = 4, THREADS = 2, STEP_TOKENS = 64 };

static tpd_synth_spec model_spec(void) {
  tpd_synth_spec s;
  TU_TRY(tpd_synth_preset("tiny", &s));
  s.dim = 128; /* a single row's all-reduce is cut into 64-column chunks at TP = 2 */
  s.ffn_dim = 256;
  s.vocab = 2048; /* top-p over hundreds of candidates */
  s.dtype = TPD_F32;
  s.seed = 4242;
  return s;
}

/* ---- 2: the plan against the allocations ---- */

/* the CPU backend's allocation (kernels/cpu/cpu_backend.h, tpd_cpu_alloc) */
static size_t cpu_rounded(size_t n) { return tpd_cpu_alloc_bytes(n); }

static int recorded(const ac_record *r, int n, char kind, size_t n_bytes) {
  for (int i = 0; i < n; i++)
    if (r[i].kind == kind && r[i].n_bytes == n_bytes) return 1;
  return 0;
}

static void check_plan(const tpd_engine *e, const ac_record *rec, int n_rec, int tp) {
  tpd_engine_info in;
  tpd_engine_get_info(e, &in);
  const tpd_model_config *c = tpd_engine_config(e);
  const double D = c->dim, Dh = c->head_dim, L = c->n_layers, V = c->vocab / tp, T = STEP_TOKENS, S = MAX_SEQS;
  const double Hq = c->n_heads / tp, Hkv = c->n_kv_heads / tp, F = c->ffn_dim / tp, f = sizeof(float);
  /* the shape's numbers */
  const double blocks = S * ((MAX_CTX + BLOCK - 1) / BLOCK);
  const double kv = 2 * L * blocks * Hkv * BLOCK * Dh * f;
  CHECK(in.kv_bytes == kv, "TP=%d KV %.0f bytes, the shape gives %.0f", tp, in.kv_bytes, kv);
  const double w = L * (((Hq + 2 * Hkv) * Dh * D + D * Hq * Dh + 2 * F * D + D * F) * f + 2 * D * f) + D * f + V * D * f;
  CHECK(in.weight_bytes == w, "TP=%d weights %.0f bytes, the shape gives %.0f", tp, in.weight_bytes, w);
  /* step buffers: x, h, proj [T, D]; qkv; att; gate/up (no fused op on the
   * cpu); act; last rows, logits, argmax value and index; the rope table --
   * each region 256-aligned */
  const double act = (3 * T * D + T * (Hq + 2 * Hkv) * Dh + T * Hq * Dh + 3 * T * F + S * D + S * V + 2 * S) * f +
                     Dh / 2 * sizeof(double);
  CHECK(in.act_bytes >= act && in.act_bytes <= act + 12 * 256, "TP=%d activations %.0f bytes, the shape gives %.0f",
        tp, in.act_bytes, act);
  CHECK(in.host_bytes > S * c->vocab * f, "TP=%d host %.0f bytes: less than the gathered logits", tp, in.host_bytes);
  /* each number is one allocation the engine made */
  CHECK(recorded(rec, n_rec, 'c', (size_t)in.host_bytes), "TP=%d no calloc of the planned host arena (%.0f bytes)",
        tp, in.host_bytes);
  CHECK(recorded(rec, n_rec, 'a', cpu_rounded((size_t)in.act_bytes)),
        "TP=%d no allocation of the planned step arena (%.0f bytes)", tp, in.act_bytes);
  CHECK(recorded(rec, n_rec, 'a', cpu_rounded((size_t)in.kv_bytes)),
        "TP=%d no allocation of the planned KV arena (%.0f bytes)", tp, in.kv_bytes);
  /* the cpu workspace: the attention scratch and partials for STEP_TOKENS
   * rows at MAX_CTX (kernels/cpu/attention.h), and the matmul scratch, both aligned */
  tpd_att_sizes as;
  tpd_att_sizes_for(STEP_TOKENS, MAX_CTX, (int)Hq, (int)Hkv, (int)Dh, in.n_threads, &as);
  const size_t att = as.total_bytes;
  const size_t scratch = (size_t)in.workspace_bytes - att;
  CHECK(in.workspace_bytes >= (double)att && as.part_chunks >= (size_t)STEP_TOKENS * ((MAX_CTX + 255) / 256) &&
            recorded(rec, n_rec, 'a', cpu_rounded(att)) && (scratch == 0 || recorded(rec, n_rec, 'a', cpu_rounded(scratch))),
        "TP=%d workspace %.0f bytes: not the attention rows (%zu) plus an allocated scratch", tp,
        in.workspace_bytes, att);
}

/* ---- 1: decode steps ---- */

typedef struct {
  const char *label;
  int batch, overlap, with_logits;
  tpd_sampling sampling[MAX_SEQS];
} decode_case;

static void run_case(tpd_engine *e, const decode_case *dc, int tp, int rank, float *logits) {
  const tpd_model_config *c = tpd_engine_config(e);
  CHECK_OK(tpd_engine_set_option(e, TPD_OPT_OVERLAP, dc->overlap));
  CHECK_OK(tpd_engine_set_option(e, TPD_OPT_AR_CHUNKS, dc->overlap ? 2 : 1));
  int slots[MAX_SEQS];
  tpd_step_item it[MAX_SEQS];
  int32_t prompt[MAX_SEQS][9], next[MAX_SEQS];
  for (int i = 0; i < dc->batch; i++) {
    TU_TRY(tpd_engine_seq_open(e, &slots[i]));
    const int n = tu_int(2, 9);
    for (int j = 0; j < n; j++) prompt[i][j] = tu_int(0, c->vocab - 1);
    it[i] = (tpd_step_item){.slot = slots[i], .n_tokens = n, .tokens = prompt[i], .sampling = dc->sampling[i],
                            .stream = (uint64_t)i};
  }
  TU_TRY(tpd_engine_step(e, it, dc->batch, next, NULL)); /* prefill, not counted */
  long ours = 0, all = 0;
  for (int s = 0; s < N_DECODE; s++) {
    for (int i = 0; i < dc->batch; i++) {
      it[i].n_tokens = 1;
      it[i].tokens = &next[i];
    }
    ac_reset();
    ac_window(1);
    const tpd_status st = tpd_engine_step(e, it, dc->batch, next, dc->with_logits ? logits : NULL);
    ac_window(0);
    CHECK_OK(st);
    ours += ac_ours();
    all += ac_all();
  }
  for (int i = 0; i < dc->batch; i++) tpd_engine_seq_close(e, slots[i]);
  CHECK(ours == 0, "TP=%d rank %d %s: %ld allocations by tpdecode in %d decode steps", tp, rank, dc->label, ours,
        N_DECODE);
  if (tp == 1 && ac_process_wide())
    CHECK(all == 0, "TP=1 %s: %ld allocations in the process in %d decode steps", dc->label, all, N_DECODE);
  if (rank == 0)
    printf("TP=%d %-34s tpdecode %ld, process %ld%s allocations in %d decode steps\n", tp, dc->label, ours, all,
           tp > 1 ? " (MPI's included)" : "", N_DECODE);
}

/* The counters can fail: a malloc of this program and one inside libc. */
static int cmp_int(const void *a, const void *b) { return *(const int *)a - *(const int *)b; }
static void check_counters(void) {
  ac_reset();
  ac_window(1);
  void *volatile p = malloc(100);
  ac_window(0);
  free(p);
  CHECK(ac_ours() == 1 && ac_all() == (ac_process_wide() ? 1 : 0), "a malloc of the test counted as %ld / %ld",
        ac_ours(), ac_all());
  if (!ac_process_wide()) return;
  int v[2000];
  for (int i = 0; i < 2000; i++) v[i] = tu_int(0, 1 << 20);
  ac_reset();
  ac_window(1);
  qsort(v, 2000, sizeof v[0], cmp_int); /* glibc sorts through a malloc'd buffer above 1 KB */
  ac_window(0);
  CHECK(ac_ours() == 0 && ac_all() >= 1, "glibc's qsort of 8 KB counted as %ld / %ld (tpdecode / process)",
        ac_ours(), ac_all());
}

int main(int argc, char **argv) {
  tpd_comm *comm = NULL;
  TU_TRY(tpd_comm_create_default(&argc, &argv, &comm));
  const int tp = comm->size, rank = comm->rank;
  tu_seed("test_alloc");
  CHECK_OK(comm->ops->host_broadcast(comm, &tu_state, sizeof tu_state, 0)); /* same prompts on every rank */
  check_counters();

  char dir[4096];
  const char *tmp = getenv("TMPDIR");
  snprintf(dir, sizeof dir, "%s/tpd-alloc-tp%d-%ld", tmp && *tmp ? tmp : "/tmp", tp, (long)getppid());
  if (rank == 0) {
    const tpd_synth_spec s = model_spec();
    TU_TRY(tpd_synth_write(&s, dir));
  }
  TU_TRY(comm->ops->barrier(comm));

  tpd_engine_opts o = {TPD_ENGINE_OPTS_INIT, .model_dir = dir, .n_threads = THREADS, .max_seqs = MAX_SEQS, .max_ctx = MAX_CTX,
                       .max_step_tokens = STEP_TOKENS, .kv_block_size = BLOCK};
  tpd_engine *e = NULL;
  ac_record_start();
  TU_TRY(tpd_engine_create(&o, comm, &e));
  const ac_record *rec = NULL;
  const int n_rec = ac_record_stop(&rec);
  check_plan(e, rec, n_rec, tp);

  const int V = tpd_engine_config(e)->vocab;
  float *logits = tu_malloc(sizeof(float) * (size_t)MAX_SEQS * V);
  const uint64_t seed = tu_next();
  const tpd_sampling greedy = {0}, top_p = {.temperature = 1.5f, .top_p = 0.95f, .seed = seed},
                     top_k = {.temperature = 0.8f, .top_k = 40, .seed = seed + 1};
  const decode_case cases[] = {
      {"batch 1, greedy", 1, 0, 0, {greedy}},
      {"batch 1, temperature + top-p", 1, 0, 0, {top_p}},
      {"batch 3, greedy / top-p / top-k", 3, 0, 0, {greedy, top_p, top_k}},
      {"batch 3, greedy, gathered logits", 3, 0, 1, {greedy, greedy, greedy}},
      {"batch 1, overlap (chunked)", 1, 1, 0, {top_p}},
      {"batch 3, overlap (micro-batches)", 3, 1, 0, {greedy, top_p, top_k}},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) run_case(e, &cases[i], tp, rank, logits);
  free(logits);
  tpd_engine_destroy(e);
  TU_TRY(comm->ops->barrier(comm));
  if (rank == 0) {
    char p[4200];
    const char *files[] = {"config.json", "model.safetensors"};
    for (int i = 0; i < 2; i++) {
      snprintf(p, sizeof p, "%s/%s", dir, files[i]);
      unlink(p);
    }
    rmdir(dir);
  }
  const int rc = tu_finish("test_alloc");
  tpd_comm_destroy(comm);
  return rc;
}
