/* Tensor parallelism under mpirun: run with -np 1, 2 and 4.  Each run
 * generates (greedy and sampled, a batch of three prompts of different
 * lengths) on fixed-seed synthetic models, checks on rank 0 against the
 * float64 reference, checks that every rank got the same tokens, and writes
 * its results to DIR/tp<N>.bin for test_tp_compare. */
#include <sys/stat.h>
#include <unistd.h>

#include "ref_model.h"
#include "runtime/generate.h"
#include "runtime/synth.h"
#include "runtime/tpdecode.h"
#include "testutil.h"

enum { N_NEW = 12, N_MODELS = 3 };
static const int LENS[3] = {1, 5, 11};

typedef struct {
  const char *name, *arch;
  tpd_dtype dtype;
  int tie, llama3;
  unsigned long long seed;
} mspec;

static const mspec MODELS[N_MODELS] = {
    {"llama3-f32", "llama", TPD_F32, 1, 1, 101},
    {"llama-bf16", "llama", TPD_BF16, 0, 0, 202},
    {"qwen2-f32", "qwen2", TPD_F32, 1, 0, 303},
};

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
    tpd_engine_opts o = {.model_dir = path, .n_threads = 1, .max_seqs = 3, .max_ctx = 32, .kv_block_size = 4};
    tpd_engine *e = NULL;
    CHECK_OK(tpd_engine_create(&o, comm, &e));
    if (!e) break;
    const int V = tpd_engine_config(e)->vocab;
    tpd_gen_request q = {.n_seqs = 3, .prompts = pp, .prompt_lens = LENS, .n_new = N_NEW, .logits_steps = N_NEW};
    tpd_gen_result g, s;
    CHECK_OK(tpd_generate(e, &q, &g));
    /* overlap on (micro-batch ping-pong, chunked all-reduce of single rows):
     * the same tokens, the same logits up to summation order */
    tpd_gen_result ov;
    const int was = tpd_engine_get_option(e, TPD_OPT_OVERLAP);
    CHECK_OK(tpd_engine_set_option(e, TPD_OPT_OVERLAP, !was));
    CHECK_OK(tpd_engine_set_option(e, TPD_OPT_AR_CHUNKS, 3));
    CHECK_OK(tpd_generate(e, &q, &ov));
    CHECK_OK(tpd_engine_set_option(e, TPD_OPT_OVERLAP, was));
    if (ov.tokens && g.tokens) {
      double d = 0, mx = 0;
      for (size_t k = 0; k < (size_t)N_NEW * 3 * V; k++) {
        d = fmax(d, fabs((double)ov.step_logits[k] - g.step_logits[k]));
        mx = fmax(mx, fabs((double)g.step_logits[k]));
      }
      int same = 1;
      for (int i = 0; i < 3; i++) same &= !memcmp(ov.tokens[i], g.tokens[i], sizeof(int32_t) * N_NEW);
      CHECK(same, "%s TP=%d: overlap %s changes the tokens", MODELS[m].name, tp, was ? "off" : "on");
      CHECK(d / mx < 1e-5, "%s TP=%d: overlap changes logits by %.3g of max |logit|", MODELS[m].name, tp, d / mx);
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
        CHECK(same, "%s TP=%d: prompt %d greedy ids differ from the float64 reference", MODELS[m].name, tp, i);
        for (int t = 0; t < N_NEW; t++) {
          seq[LENS[i] + t] = g.tokens[i][t];
          ref_forward(ref, seq, LENS[i] + t, rl);
          double mx = 0;
          for (int v = 0; v < V; v++) mx = fmax(mx, fabs(rl[v]));
          const double err = tu_max_abs_fd(g.step_logits + ((size_t)t * 3 + i) * V, rl, (size_t)V) / mx;
          if (err > worst) worst = err;
        }
      }
      CHECK(worst < 1e-4, "%s TP=%d: logits differ from the float64 reference by %.3g of max |logit|", MODELS[m].name,
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
  tpd_comm_destroy(comm);
  if (bad >= 0 && tu_failures == 0) tu_failures = 1;
  return tu_finish(rank == 0 ? "test_tp" : "test_tp (rank > 0)");
}
