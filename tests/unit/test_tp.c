/* Tensor parallelism under mpirun: run with -np 1, 2 and 4.  Each run
 * generates (greedy and sampled, a batch of three prompts of different
 * lengths) on fixed-seed synthetic models, checks on rank 0 against the
 * float64 reference, checks that every rank got the same tokens, and writes
 * its results to DIR/tp<N>.bin for test_tp_compare.
 *
 * Overlap (micro-batch ping-pong, chunked all-reduce of single rows) is
 * compared with overlap off at TP = 2 and 4, where it is active: the
 * communicator is wrapped to count blocking and started all-reduces, so the
 * run that claims overlap must show started (non-blocking) ones only, and
 * chunked ones on the model wide enough to cut a row.  At TP = 1 there is no
 * all-reduce and the engine ignores the option: the test asserts that it is a
 * no-op there (no all-reduce either way, bit-identical logits). */
#include <sys/stat.h>
#include <unistd.h>

#include "launch/generate.h"
#include "launch/tools/synth.h"
#include "ref_model.h"
#include "runtime/engine/tpdecode.h"
#include "testutil.h"

enum { N_NEW = 12, N_MODELS = 3 };
static const int LENS[3] = {1, 5, 11};

typedef struct {
  const char *name, *arch;
  tpd_dtype dtype;
  int tie, llama3;
  unsigned long long seed;
} mspec;

/* the first model is 128 wide, so that a single row's all-reduce is cut into
 * chunks (64-column granularity); the others keep the tiny preset's 64 */
static const mspec MODELS[N_MODELS] = {
    {"llama3-f32", "llama", TPD_F32, 1, 1, 101},
    {"llama-bf16", "llama", TPD_BF16, 0, 0, 202},
    {"qwen2-f32", "qwen2", TPD_F32, 1, 0, 303},
};

/* ---- a communicator that counts the engine's all-reduces ---- */
static const tpd_comm_ops *g_real_ops;
static tpd_comm_ops g_counting_ops;
static long g_n_blocking, g_n_started, g_n_partial; /* partial: fewer elements than one row */
static int g_dim;

static tpd_status count_allreduce(tpd_comm *c, void *buf, size_t n, tpd_dtype dt, void *stream) {
  g_n_blocking++;
  return g_real_ops->allreduce(c, buf, n, dt, stream);
}
static tpd_status count_allreduce_start(tpd_comm *c, void *buf, size_t n, tpd_dtype dt, void *stream,
                                        tpd_comm_req *req) {
  g_n_started++;
  if (n < (size_t)g_dim) g_n_partial++;
  return g_real_ops->allreduce_start(c, buf, n, dt, stream, req);
}
static void count_reset(int dim) { g_n_blocking = g_n_started = g_n_partial = 0, g_dim = dim; }

int main(int argc, char **argv) {
  tpd_comm *comm = NULL;
  if (tpd_comm_create_default(&argc, &argv, &comm) != TPD_OK) {
    fprintf(stderr, "comm: %s\n", tpd_last_error());
    return 1;
  }
  if (argc < 2) {
    fprintf(stderr, "usage: test_tp OUTDIR\n");
    return 2;
  }
  g_real_ops = comm->ops;
  g_counting_ops = *comm->ops;
  g_counting_ops.allreduce = count_allreduce;
  g_counting_ops.allreduce_start = count_allreduce_start;
  comm->ops = &g_counting_ops;
  const int tp = comm->size, rank = comm->rank;
  char dir[512], path[600];
  snprintf(dir, sizeof dir, "%s/models-tp%d", argv[1], tp);
  if (rank == 0) {
    mkdir(argv[1], 0755);
    for (int m = 0; m < N_MODELS; m++) {
      tpd_synth_spec s;
      CHECK_OK(tpd_synth_preset("tiny", &s));
      s.arch = MODELS[m].arch, s.dtype = MODELS[m].dtype, s.tie = MODELS[m].tie, s.seed = MODELS[m].seed;
      if (MODELS[m].llama3) s.rope_llama3 = 1, s.rope_factor = 8.0, s.rope_orig_max_pos = 16;
      if (m == 0) s.dim = 128;
      snprintf(path, sizeof path, "%s/%s", dir, MODELS[m].name);
      CHECK_OK(tpd_synth_write(&s, path));
    }
  }
  CHECK_OK(comm->ops->barrier(comm));
  snprintf(path, sizeof path, "%s/tp%d.bin", argv[1], tp);
  FILE *out = rank == 0 ? fopen(path, "wb") : NULL;
  CHECK(rank != 0 || out != NULL, "cannot write %s", path);

  int32_t prompts[3][11];
  for (int i = 0; i < 3; i++)
    for (int j = 0; j < LENS[i]; j++) prompts[i][j] = (int32_t)((37 * (i + 1) + 101 * j) % 512);
  const int32_t *pp[3] = {prompts[0], prompts[1], prompts[2]};
  for (int m = 0; m < N_MODELS; m++) {
    snprintf(path, sizeof path, "%s/%s", dir, MODELS[m].name);
    /* f32 KV and matmul inputs: compared with the float64 reference at 1e-4 (bf16 KV and the CPU's
     * bf16 matmul inputs, the defaults for bf16 checkpoints and, on CPUs whose vdpbf16ps outruns their
     * FMA, for the activations: test_conformance) */
    tpd_engine_opts o = {TPD_ENGINE_OPTS_INIT, .model_dir = path, .n_threads = 1, .max_seqs = 3, .max_ctx = 32, .kv_block_size = 4,
                         .kv_cache = "f32", .activations = "f32"};
    tpd_engine *e = NULL;
    CHECK_OK(tpd_engine_create(&o, comm, &e));
    if (!e) break;
    const int V = tpd_engine_config(e)->vocab;
    tpd_gen_request q = {.n_seqs = 3, .prompts = pp, .prompt_lens = LENS, .n_new = N_NEW, .logits_steps = N_NEW};
    const int D = tpd_engine_config(e)->dim;
    tpd_gen_result g, s, ov;
    /* overlap off, then on with 3 chunks per single-row all-reduce */
    CHECK_OK(tpd_engine_set_option(e, TPD_OPT_OVERLAP, 0));
    CHECK(tpd_engine_get_option(e, TPD_OPT_OVERLAP) == 0, "overlap still on after switching it off");
    count_reset(D);
    CHECK_OK(tpd_generate(e, &q, &g));
    const long off_blocking = g_n_blocking, off_started = g_n_started;
    CHECK_OK(tpd_engine_set_option(e, TPD_OPT_OVERLAP, 1));
    CHECK_OK(tpd_engine_set_option(e, TPD_OPT_AR_CHUNKS, 3));
    CHECK(tpd_engine_get_option(e, TPD_OPT_OVERLAP) == 1 && tpd_engine_get_option(e, TPD_OPT_AR_CHUNKS) == 3,
          "overlap options not taken");
    count_reset(D);
    CHECK_OK(tpd_generate(e, &q, &ov));
    const long on_blocking = g_n_blocking, on_started = g_n_started, on_partial = g_n_partial;
    CHECK_OK(tpd_engine_set_option(e, TPD_OPT_OVERLAP, 0));
    if (tp > 1) {
      /* off: every all-reduce blocks; on: every one is started and waited
       * for later, with each part's work split in two micro-batches (every
       * step here has 3 rows), so at least twice as many */
      CHECK(off_blocking > 0 && off_started == 0, "%s TP=%d overlap off: %ld blocking, %ld started all-reduces",
            MODELS[m].name, tp, off_blocking, off_started);
      CHECK(on_blocking == 0 && on_started >= 2 * off_blocking,
            "%s TP=%d overlap on is not active: %ld blocking, %ld started all-reduces (off: %ld)", MODELS[m].name, tp,
            on_blocking, on_started, off_blocking);
      if (D >= 128)
        CHECK(on_partial > 0, "%s TP=%d dim %d: no single row's all-reduce was cut into chunks", MODELS[m].name, tp,
              D);
      if (rank == 0)
        printf("%s TP=%d: all-reduces: overlap off %ld blocking; on %ld started (%ld chunks of a row)\n",
               MODELS[m].name, tp, off_blocking, on_started, on_partial);
    } else {
      CHECK(off_blocking + off_started + on_blocking + on_started == 0, "TP=1 ran an all-reduce");
    }
    if (ov.tokens && g.tokens) {
      /* the same tokens, the same logits up to summation order (at TP = 1:
       * the same bits, overlap is a no-op there) */
      const size_t n = (size_t)N_NEW * 3 * V;
      const double d = tu_max_diff_rel(ov.step_logits, g.step_logits, n);
      int same = 1;
      for (int i = 0; i < 3; i++) same &= !memcmp(ov.tokens[i], g.tokens[i], sizeof(int32_t) * N_NEW);
      CHECK(same, "%s TP=%d: overlap changes the tokens", MODELS[m].name, tp);
      CHECK(tu_within(d, tp > 1 ? 1e-5 : 0.0), "%s TP=%d: overlap changes logits by %.3g of max |logit|",
            MODELS[m].name, tp, d);
      if (tp == 1)
        CHECK(!memcmp(ov.step_logits, g.step_logits, sizeof(float) * n), "%s TP=1: overlap is not a no-op",
              MODELS[m].name);
    }
    tpd_gen_result_free(&ov);
    q.logits_steps = 0;
    q.sampling = (tpd_sampling){.temperature = 0.9f, .top_k = 50, .top_p = 0.95f, .seed = 77};
    CHECK_OK(tpd_generate(e, &q, &s));
    if (!g.tokens || !s.tokens) break;
    /* every rank holds the same tokens */
    int32_t mine[2 * 3 * N_NEW], *all = malloc(sizeof mine * (size_t)tp);
    for (int i = 0; i < 3; i++) {
      memcpy(mine + i * N_NEW, g.tokens[i], sizeof(int32_t) * N_NEW);
      memcpy(mine + (3 + i) * N_NEW, s.tokens[i], sizeof(int32_t) * N_NEW);
    }
    CHECK_OK(comm->ops->host_allgather(comm, mine, all, sizeof mine));
    for (int r = 1; r < tp; r++) CHECK(!memcmp(all, all + (size_t)r * 6 * N_NEW, sizeof mine), "rank %d's tokens differ", r);
    free(all);
    if (rank == 0) {
      /* against the float64 reference: greedy ids, and the logits of every step */
      ref_model *ref = NULL;
      CHECK(ref_load(path, &ref) == 0, "reference load");
      double *rl = malloc(sizeof(double) * (size_t)V), worst = 0;
      for (int i = 0; i < 3 && ref; i++) {
        int seq[11 + N_NEW], want[N_NEW];
        for (int j = 0; j < LENS[i]; j++) seq[j] = prompts[i][j];
        ref_greedy(ref, seq, LENS[i], N_NEW, want, NULL);
        int same = 1;
        for (int t = 0; t < N_NEW; t++) same &= want[t] == g.tokens[i][t];
        /* every step on the engine's own prefix: its id the reference's best or a near tie
         * (REF_GREEDY_TIE), and its logits */
        for (int t = 0; t < N_NEW; t++) {
          seq[LENS[i] + t] = g.tokens[i][t];
          ref_forward(ref, seq, LENS[i] + t, rl);
          const double gap = ref_greedy_gap(rl, V, g.tokens[i][t]);
          CHECK(gap <= REF_GREEDY_TIE, "%s TP=%d: prompt %d step %d: its greedy id is %.3g of max |logit| below the float64 reference's best%s",
                MODELS[m].name, tp, i, t, gap, same ? "" : " (the free-running reference's ids differ)");
          worst = tu_worst(worst, tu_max_diff_rel(g.step_logits + ((size_t)t * 3 + i) * V, rl, V));
        }
      }
      CHECK(tu_within(worst, 1e-4), "%s TP=%d: logits differ from the float64 reference by %.3g of max |logit|", MODELS[m].name,
            tp, worst);
      printf("%s TP=%d: greedy ids as the float64 reference; logits within %.2e of max |logit|\n", MODELS[m].name, tp,
             worst);
      free(rl);
      ref_free(ref);
      for (int i = 0; i < 3 && out; i++) {
        fwrite(g.tokens[i], sizeof(int32_t), N_NEW, out);
        fwrite(s.tokens[i], sizeof(int32_t), N_NEW, out);
      }
      if (out) fwrite(g.step_logits, sizeof(float), (size_t)N_NEW * 3 * V, out);
    }
    tpd_gen_result_free(&g);
    tpd_gen_result_free(&s);
    tpd_engine_destroy(e);
  }
  if (out) fclose(out);
  /* the verdict must be the same on every rank */
  int bad = -1;
  tpd_comm_agree(comm, tu_failures == 0, &bad);
  comm->ops = g_real_ops;
  tpd_comm_destroy(comm);
  if (bad >= 0 && tu_failures == 0) tu_failures = 1;
  return tu_finish(rank == 0 ? "test_tp" : "test_tp (rank > 0)");
}
