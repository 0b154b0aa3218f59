/* MPI's lifetime and thread level under tpd_comm_mpi_create (run under
 * mpirun -np 2).  One mode per process, since MPI starts once per process:
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
 *                 create fails, names both levels, and leaves MPI running.
 *
 * After MPI is finalised the ranks cannot agree on a verdict, so each rank
 * exits with its own; mpirun fails when any rank does. */
#include <mpi.h>

#include "comm/comm.h"
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
  CHECK(!is_finalized(), "a failed create finalised the program's MPI");
  if (!is_finalized()) MPI_Finalize();
  return tu_finish("test_comm_mpi thread_level");
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: test_comm_mpi refcount|app|thread_level (under mpirun -np 2)\n");
    return 2;
  }
  tu_seed("test_comm_mpi");
  const char *mode = argv[1];
  if (!strcmp(mode, "refcount")) return mode_refcount(&argc, &argv);
  if (!strcmp(mode, "app")) return mode_app(&argc, &argv);
  if (!strcmp(mode, "thread_level")) return mode_thread_level(&argc, &argv);
  fprintf(stderr, "test_comm_mpi: unknown mode %s\n", mode);
  return 2;
}
