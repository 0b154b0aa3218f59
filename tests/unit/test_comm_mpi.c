/* MPI's lifetime and thread level under tpd_comm_mpi_create and
 * tpd_comm_mpi_from (run under mpirun -np 2; "from" under -np 4).  One mode
 * per process, since MPI starts once per process:
 *
 *   refcount      tpdecode initialises MPI through the first of two
 *                 communicators; destroying that one leaves MPI running and
 *                 the second all-reduces correctly (F32 and BF16 against a
 *                 float64 sum of every rank's fresh random data); MPI is
 *                 finalised exactly when the second goes; a third create
 *                 then fails with a message.
 *   app           the program initialised MPI itself (FUNNELED): destroying
 *                 every tpdecode communicator never finalises it.
 *   thread_level  the program initialised MPI at MPI_THREAD_SINGLE: the
 *                 create fails, names both levels, and leaves MPI running;
 *                 tpd_comm_mpi_from refuses it the same way (TPD_ERR_STATE).
 *   from          (np 4) tpd_comm_mpi_from before MPI_Init_thread, on
 *                 MPI_COMM_NULL and on an inter-communicator fails with a
 *                 one-line message; then the world is split in two halves
 *                 (world rank % 2), each gets a communicator over its half:
 *                 rank, size and node-local rank within the half (against
 *                 processor names gathered by the program), an F32
 *                 all-reduce of fresh per-rank random values against the
 *                 float64 sum of the half's values gathered over
 *                 MPI_COMM_WORLD, and an engine at TP 2 per half on one
 *                 synthetic model: greedy prefill + 3 decode steps give the
 *                 same tokens in both halves and on every rank, and the
 *                 float64 reference's ids.  Destroying the communicators
 *                 leaves the program's MPI (and its split communicator, freed
 *                 right after the create) alone: a barrier and an all-reduce
 *                 on MPI_COMM_WORLD still work, the program finalises MPI,
 *                 and tpd_comm_mpi_from then fails naming it.
 *
 * After MPI is finalised the ranks cannot agree on a verdict, so each rank
 * exits with its own; mpirun fails when any rank does. */
#include <mpi.h>
#include <sys/stat.h>
#include <unistd.h>

#include "comm/tpdecode_mpi.h"
#include "launch/tools/synth.h"
#include "ref_model.h"
#include "runtime/engine/tpdecode.h"
#include "testutil.h"

static int rank_of_world(void) {
  int r = -1;
  MPI_Comm_rank(MPI_COMM_WORLD, &r);
  return r;
}

static int is_finalized(void) {
  int f = 0;
  MPI_Finalized(&f);
  return f;
}

/* An all-reduce over `c` of fresh random values from every rank, F32 and
 * BF16, against the float64 sum (each rank regenerates every rank's data
 * from a seed that rank 0 broadcasts). */
static void check_allreduce(tpd_comm *c) {
  enum { N = 1000 };
  uint64_t seed = tu_next();
  CHECK_OK(c->ops->host_broadcast(c, &seed, sizeof seed, 0));
  float mine[N];
  double want[N] = {0}, scale[N] = {0};
  for (int r = 0; r < c->size; r++) {
    tu_state = seed + 0x9e3779b97f4a7c15ull * (uint64_t)(r + 1);
    for (int i = 0; i < N; i++) {
      const float v = (float)tu_uniform(-2.0, 2.0);
      if (r == c->rank) mine[i] = v;
      want[i] += v;
      scale[i] += fabs(v);
    }
  }
  float got[N];
  memcpy(got, mine, sizeof got);
  CHECK_OK(c->ops->allreduce(c, got, N, TPD_F32, NULL));
  /* error in units of its bound: the inputs are exact and each of the
   * size - 1 float additions rounds by at most 2^-24 of sum |x| */
  double worst = 0;
  for (int i = 0; i < N; i++)
    worst = tu_worst(worst, tu_abs_diff(got[i], want[i]) / ((c->size - 1) * 0x1p-24 * scale[i]));
  CHECK(tu_within(worst, 1.0), "F32 all-reduce on the surviving communicator: error %.3g of the bound", worst);
  uint16_t b[N];
  for (int i = 0; i < N; i++) b[i] = tpd_f32_to_bf16(mine[i]);
  CHECK_OK(c->ops->allreduce(c, b, N, TPD_BF16, NULL));
  /* each input rounded to bf16 (at most 2^-8 of it: 8 significant bits), then size - 1 partial
   * sums rounded to bf16 (2^-8 of sum |x| each): size * 2^-8 * sum |x| */
  worst = 0;
  for (int i = 0; i < N; i++)
    worst = tu_worst(worst, tu_abs_diff(tpd_bf16_to_f32(b[i]), want[i]) / (c->size * 0x1p-8 * scale[i]));
  CHECK(tu_within(worst, 1.0), "BF16 all-reduce (a user-defined MPI op) on the surviving communicator: error %.3g",
        worst);
}

static int mode_refcount(int *argc, char ***argv) {
  int inited = 0;
  MPI_Initialized(&inited);
  CHECK(!inited, "MPI is initialised before the first communicator");
  tpd_comm *a = NULL, *b = NULL, *c = NULL;
  CHECK_OK(tpd_comm_mpi_create(argc, argv, &a)); /* this one initialises MPI */
  CHECK_OK(tpd_comm_mpi_create(argc, argv, &b));
  if (!a || !b) return 1;
  CHECK(a->size == 2 && b->size == 2, "run this mode under mpirun -np 2 (size %d)", a->size);
  tpd_comm_destroy(a); /* the one that initialised MPI goes first */
  CHECK(!is_finalized(), "MPI was finalised while a communicator is still alive");
  if (!is_finalized()) {
    check_allreduce(b);
    CHECK_OK(b->ops->barrier(b));
  }
  const int r = b->rank;
  tpd_comm_destroy(b);
  CHECK(is_finalized(), "MPI is still running after the last tpdecode communicator was destroyed");
  tpd_clear_error();
  CHECK(tpd_comm_mpi_create(argc, argv, &c) == TPD_ERR_COMM && !c && strstr(tpd_last_error(), "finalized"),
        "a communicator after MPI_Finalize: %s", tpd_last_error());
  const int bad = tu_finish("test_comm_mpi refcount");
  if (!bad) printf("rank %d: MPI stayed up after the first communicator and ended with the second\n", r);
  return bad;
}

static int mode_app(int *argc, char ***argv) {
  int provided = -1;
  CHECK(MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided) == MPI_SUCCESS);
  tpd_comm *a = NULL, *b = NULL;
  CHECK_OK(tpd_comm_mpi_create(argc, argv, &a));
  CHECK_OK(tpd_comm_mpi_create(argc, argv, &b));
  if (!a || !b) return 1;
  tpd_comm_destroy(b);
  check_allreduce(a);
  tpd_comm_destroy(a);
  CHECK(!is_finalized(), "tpdecode finalised MPI that the program initialised");
  if (is_finalized()) return tu_finish("test_comm_mpi app");
  int one = 1, sum = 0; /* the program's MPI still works */
  CHECK(MPI_Allreduce(&one, &sum, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD) == MPI_SUCCESS && sum == 2, "sum %d", sum);
  CHECK(MPI_Finalize() == MPI_SUCCESS);
  return tu_finish("test_comm_mpi app");
}

static int mode_thread_level(int *argc, char ***argv) {
  int provided = -1;
  CHECK(MPI_Init_thread(argc, argv, MPI_THREAD_SINGLE, &provided) == MPI_SUCCESS);
  if (provided >= MPI_THREAD_FUNNELED) { /* this MPI gives more than asked: nothing to refuse */
    printf("rank %d: SKIP: MPI_Init_thread(MPI_THREAD_SINGLE) provided level %d\n", rank_of_world(), provided);
    MPI_Finalize();
    return 0;
  }
  tpd_comm *a = NULL;
  tpd_clear_error();
  const tpd_status st = tpd_comm_mpi_create(argc, argv, &a);
  CHECK(st == TPD_ERR_COMM && !a, "a communicator over MPI_THREAD_SINGLE was accepted (status %s)",
        tpd_status_name(st));
  CHECK(strstr(tpd_last_error(), "MPI_THREAD_SINGLE") && strstr(tpd_last_error(), "MPI_THREAD_FUNNELED"),
        "the message does not name both thread levels: %s", tpd_last_error());
  if (a) tpd_comm_destroy(a);
  tpd_clear_error();
  const tpd_status sf = tpd_comm_mpi_from(MPI_COMM_WORLD, &a);
  CHECK(sf == TPD_ERR_STATE && !a, "tpd_comm_mpi_from over MPI_THREAD_SINGLE was accepted (status %s)",
        tpd_status_name(sf));
  CHECK(strstr(tpd_last_error(), "MPI_THREAD_SINGLE") && strstr(tpd_last_error(), "MPI_THREAD_FUNNELED") &&
            !strchr(tpd_last_error(), '\n'),
        "tpd_comm_mpi_from: the message does not name both thread levels on one line: %s", tpd_last_error());
  if (a) tpd_comm_destroy(a);
  CHECK(!is_finalized(), "a failed create finalised the program's MPI");
  if (!is_finalized()) MPI_Finalize();
  return tu_finish("test_comm_mpi thread_level");
}

/* ---- from: communicators over the two halves of MPI_COMM_WORLD ---- */

/* A refused tpd_comm_mpi_from: the status, no communicator, and a one-line
 * message containing `word`. */
static void check_refused(MPI_Comm comm, tpd_status want, const char *word, const char *what) {
  tpd_comm *c = NULL;
  tpd_clear_error();
  const tpd_status st = tpd_comm_mpi_from(comm, &c);
  const char *msg = tpd_last_error();
  CHECK(st == want && !c, "%s: status %s (want %s)", what, tpd_status_name(st), tpd_status_name(want));
  CHECK(*msg && strstr(msg, word) && !strchr(msg, '\n'), "%s: the message is not one line naming %s: \"%s\"", what,
        word, msg);
  if (c) tpd_comm_destroy(c);
}

/* node-local rank and size of this process among the ranks of `comm`, from
 * the processor names the ranks gather (not from MPI_Comm_split_type) */
static void local_by_name(MPI_Comm comm, int rank, int size, int *local_rank, int *local_size) {
  char mine[MPI_MAX_PROCESSOR_NAME] = {0};
  int len = 0;
  CHECK(MPI_Get_processor_name(mine, &len) == MPI_SUCCESS);
  char *all = calloc((size_t)size, MPI_MAX_PROCESSOR_NAME);
  CHECK(all != NULL);
  if (!all) return;
  CHECK(MPI_Allgather(mine, MPI_MAX_PROCESSOR_NAME, MPI_CHAR, all, MPI_MAX_PROCESSOR_NAME, MPI_CHAR, comm) ==
        MPI_SUCCESS);
  *local_rank = *local_size = 0;
  for (int r = 0; r < size; r++)
    if (!strncmp(all + (size_t)r * MPI_MAX_PROCESSOR_NAME, mine, MPI_MAX_PROCESSOR_NAME)) {
      if (r < rank) ++*local_rank;
      ++*local_size;
    }
  free(all);
}

/* An F32 all-reduce over the half's communicator of this rank's values
 * (seeded by its world rank), against the float64 sum of the values of the
 * half's ranks gathered over MPI_COMM_WORLD by the program itself. */
static void check_half_allreduce(tpd_comm *c, uint64_t seed, int wrank, int wsize, int colour) {
  enum { N = 1000 };
  float mine[N], got[N];
  tu_state = seed + 0x9e3779b97f4a7c15ull * (uint64_t)(wrank + 1);
  for (int i = 0; i < N; i++) mine[i] = (float)tu_uniform(-2.0, 2.0);
  float *all = calloc((size_t)wsize * N, sizeof(float));
  CHECK(all != NULL);
  if (!all) return;
  CHECK(MPI_Allgather(mine, N, MPI_FLOAT, all, N, MPI_FLOAT, MPI_COMM_WORLD) == MPI_SUCCESS);
  double want[N] = {0}, scale[N] = {0};
  int n_half = 0;
  for (int r = 0; r < wsize; r++) {
    if (r % 2 != colour) continue;
    n_half++;
    for (int i = 0; i < N; i++) want[i] += all[(size_t)r * N + i], scale[i] += fabs(all[(size_t)r * N + i]);
  }
  free(all);
  CHECK(n_half == c->size, "half %d has %d ranks, the communicator %d", colour, n_half, c->size);
  memcpy(got, mine, sizeof got);
  CHECK_OK(c->ops->allreduce(c, got, N, TPD_F32, NULL));
  /* the size - 1 float additions round by at most 2^-24 of sum |x| each */
  double worst = 0;
  for (int i = 0; i < N; i++)
    worst = tu_worst(worst, tu_abs_diff(got[i], want[i]) / ((c->size - 1) * 0x1p-24 * scale[i]));
  CHECK(tu_within(worst, 1.0), "half %d: F32 all-reduce differs from the sum over the half by %.3g of the bound",
        colour, worst);
}

enum { FROM_PROMPT = 7, FROM_DECODE = 3, FROM_TOKENS = 1 + FROM_DECODE };

/* Greedy prefill + FROM_DECODE decode steps at TP = c->size on the model in
 * dir: out[FROM_TOKENS]. */
static void run_engine(tpd_comm *c, const char *dir, const int32_t *prompt, int32_t *out) {
  tpd_engine_opts o;
  tpd_engine_opts_init(&o);
  o.model_dir = dir, o.n_threads = 1, o.max_seqs = 1, o.max_ctx = 32, o.kv_block_size = 4;
  /* f32 KV, as test_tp's 1e-4 (REF_GREEDY_TIE) assumes: the bf16 model's default bf16 cache put a greedy id 2.7e-4 of max
   * |logit| below the float64 reference's best, which keeps K and V in full precision */
  o.kv_cache = "f32";
  /* and f32 matmul inputs (auto rounds them to bf16 on a CPU whose vdpbf16ps outruns its FMA: 2 of 200
   * seeds put a greedy id 7e-4 of max |logit| below the float64 reference's best) */
  o.activations = "f32";
  tpd_engine *e = NULL;
  CHECK_OK(tpd_engine_create(&o, c, &e));
  if (!e) return;
  CHECK(tpd_engine_rank(e) == c->rank, "the engine's rank %d, the communicator's %d", tpd_engine_rank(e), c->rank);
  int slot = -1;
  CHECK_OK(tpd_engine_seq_open(e, &slot));
  tpd_step_item it = {.slot = slot, .n_tokens = FROM_PROMPT, .tokens = prompt};
  CHECK_OK(tpd_engine_step(e, &it, 1, &out[0], NULL));
  for (int t = 1; t < FROM_TOKENS; t++) {
    it.n_tokens = 1, it.tokens = &out[t - 1];
    CHECK_OK(tpd_engine_step(e, &it, 1, &out[t], NULL));
  }
  CHECK_OK(tpd_engine_seq_close(e, slot));
  tpd_engine_destroy(e);
}

static int mode_from(int *argc, char ***argv) {
  /* before MPI_Init_thread: refused, and MPI is left uninitialised */
  check_refused(MPI_COMM_WORLD, TPD_ERR_STATE, "not initialised", "tpd_comm_mpi_from before MPI_Init_thread");
  int inited = 1;
  MPI_Initialized(&inited);
  CHECK(!inited, "tpd_comm_mpi_from initialised MPI");
  int provided = -1;
  CHECK(MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided) == MPI_SUCCESS && provided >= MPI_THREAD_FUNNELED,
        "MPI_Init_thread(FUNNELED) provided %d", provided);
  int wrank = -1, wsize = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &wrank);
  MPI_Comm_size(MPI_COMM_WORLD, &wsize);
  if (wsize != 4) {
    fprintf(stderr, "test_comm_mpi from: run under mpirun -np 4 (size %d)\n", wsize);
    MPI_Finalize();
    return 1;
  }
  check_refused(MPI_COMM_NULL, TPD_ERR_ARG, "MPI_COMM_NULL", "tpd_comm_mpi_from(MPI_COMM_NULL)");

  /* the two halves, and an inter-communicator between them (refused) */
  const int colour = wrank % 2;
  MPI_Comm half = MPI_COMM_NULL, inter = MPI_COMM_NULL;
  CHECK(MPI_Comm_split(MPI_COMM_WORLD, colour, wrank, &half) == MPI_SUCCESS);
  int hrank = -1, hsize = 0;
  MPI_Comm_rank(half, &hrank);
  MPI_Comm_size(half, &hsize);
  CHECK(MPI_Intercomm_create(half, 0, MPI_COMM_WORLD, 1 - colour, 99, &inter) == MPI_SUCCESS);
  check_refused(inter, TPD_ERR_ARG, "inter-communicator", "tpd_comm_mpi_from(an inter-communicator)");
  MPI_Comm_free(&inter);

  tpd_comm *c = NULL;
  CHECK_OK(tpd_comm_mpi_from(half, &c));
  if (!c) {
    MPI_Abort(MPI_COMM_WORLD, 1);
    return 1;
  }
  CHECK(c->rank == hrank && c->size == hsize && hsize == 2, "half %d: rank %d size %d, want %d of %d", colour,
        c->rank, c->size, hrank, hsize);
  int lrank = -1, lsize = -1;
  local_by_name(half, hrank, hsize, &lrank, &lsize);
  CHECK(c->local_rank == lrank && c->local_size == lsize, "half %d: node-local rank %d of %d, want %d of %d", colour,
        c->local_rank, c->local_size, lrank, lsize);
  CHECK(tpd_log_rank() == wrank, "log lines name rank %d, the world rank is %d", tpd_log_rank(), wrank);
  /* the program's communicator is its own: freeing it leaves tpdecode's duplicate */
  CHECK(MPI_Comm_free(&half) == MPI_SUCCESS && half == MPI_COMM_NULL);

  uint64_t seed = tu_next();
  CHECK(MPI_Bcast(&seed, 1, MPI_UINT64_T, 0, MPI_COMM_WORLD) == MPI_SUCCESS);
  check_half_allreduce(c, seed, wrank, wsize, colour);

  /* one synthetic model, written by world rank 0; an engine at TP 2 per half */
  int pid = (int)getpid();
  CHECK(MPI_Bcast(&pid, 1, MPI_INT, 0, MPI_COMM_WORLD) == MPI_SUCCESS);
  char dir[128];
  snprintf(dir, sizeof dir, "/tmp/tpd-test-comm-from-%d", pid);
  tu_state = seed;
  tpd_synth_spec s;
  CHECK_OK(tpd_synth_preset("tiny", &s));
  s.seed = (unsigned long long)tu_next();
  if (wrank == 0) CHECK_OK(tpd_synth_write(&s, dir));
  int32_t prompt[FROM_PROMPT], tok[FROM_TOKENS];
  for (int i = 0; i < FROM_PROMPT; i++) prompt[i] = (int32_t)tu_int(0, s.vocab - 1);
  for (int i = 0; i < FROM_TOKENS; i++) tok[i] = -1;
  CHECK(MPI_Barrier(MPI_COMM_WORLD) == MPI_SUCCESS);
  run_engine(c, dir, prompt, tok);
  int32_t all[4][FROM_TOKENS];
  CHECK(MPI_Allgather(tok, FROM_TOKENS, MPI_INT32_T, all, FROM_TOKENS, MPI_INT32_T, MPI_COMM_WORLD) == MPI_SUCCESS);
  for (int r = 1; r < wsize; r++)
    CHECK(!memcmp(all[r], all[0], sizeof all[0]), "world rank %d's tokens differ from world rank 0's", r);
  if (wrank == 0) {
    ref_model *ref = NULL;
    CHECK(ref_load(dir, &ref) == 0, "reference load");
    if (ref) {
      int pi[FROM_PROMPT], want[FROM_TOKENS];
      for (int i = 0; i < FROM_PROMPT; i++) pi[i] = prompt[i];
      ref_greedy(ref, pi, FROM_PROMPT, FROM_TOKENS, want, NULL);
      int same = 1;
      for (int t = 0; t < FROM_TOKENS; t++) same &= want[t] == tok[t];
      /* each id the reference's argmax on the engine's own prefix, or a near tie (random weights can put two
       * logits closer than f32 rounding: a seed once did, 501 against 332 at the fourth step) */
      double gap = 0;
      const int bad = ref_check_greedy(ref, pi, FROM_PROMPT, tok, FROM_TOKENS, REF_GREEDY_TIE, &gap);
      CHECK(bad < 0, "greedy ids %d %d %d %d: step %d's id is %.3g of max |logit| below the float64 reference's best "
            "(free-running reference: %d %d %d %d)", tok[0], tok[1], tok[2], tok[3], bad, gap, want[0], want[1], want[2],
            want[3]);
      printf("from: both halves (TP 2 each) generated %d %d %d %d, %s (largest gap %.2e of max |logit|)\n", tok[0],
             tok[1], tok[2], tok[3], same ? "as the float64 reference" : "the float64 reference's up to a near tie", gap);
      ref_free(ref);
    }
    /* every engine is gone (the all-gather above follows each rank's destroy) */
    char cmd[160];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
  }

  tpd_comm_destroy(c);
  CHECK(!is_finalized(), "tpd_comm_destroy finalised the program's MPI");
  if (is_finalized()) return tu_finish("test_comm_mpi from");
  CHECK(MPI_Barrier(MPI_COMM_WORLD) == MPI_SUCCESS, "MPI_Barrier on MPI_COMM_WORLD after tpd_comm_destroy");
  int one = 1, sum = 0;
  CHECK(MPI_Allreduce(&one, &sum, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD) == MPI_SUCCESS && sum == wsize, "sum %d", sum);
  CHECK(MPI_Finalize() == MPI_SUCCESS);
  check_refused(MPI_COMM_WORLD, TPD_ERR_STATE, "finalized", "tpd_comm_mpi_from after MPI_Finalize");
  return tu_finish("test_comm_mpi from");
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: test_comm_mpi refcount|app|thread_level (under mpirun -np 2) | from (-np 4)\n");
    return 2;
  }
  tu_seed("test_comm_mpi");
  const char *mode = argv[1];
  if (!strcmp(mode, "refcount")) return mode_refcount(&argc, &argv);
  if (!strcmp(mode, "app")) return mode_app(&argc, &argv);
  if (!strcmp(mode, "thread_level")) return mode_thread_level(&argc, &argv);
  if (!strcmp(mode, "from")) return mode_from(&argc, &argv);
  fprintf(stderr, "test_comm_mpi: unknown mode %s\n", mode);
  return 2;
}
