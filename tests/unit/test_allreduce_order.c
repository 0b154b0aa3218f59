/* The MPI communicator's all-reduce sums in rank order (comm/comm.h), under
 * mpirun -np 2, 3 and 4: every element is ((x0 + x1) + x2) + ... + x_{p-1}
 * in f32, 16-bit inputs widened first and the sum rounded once, whatever the
 * message size or how a message is split -- so a row's sum does not depend
 * on what else is in the step (batch invariance, issue 10).
 *
 * Inputs are fresh random values per rank (seed from rank 0, broadcast; each
 * rank draws its own stream) of widely different magnitudes (1e8 next to 1
 * and 1e-3, both signs), where the order of the additions changes the last
 * bits.  The reference is independent of the communicator: every rank's raw
 * inputs gathered with MPI_Allgather on MPI_COMM_WORLD and added here in rank
 * order.  Checked bit for bit, with a non-finite reference counted as a
 * mismatch:
 *
 *   sizes       1 ... 300000 elements (both sides of the gather / split
 *               threshold), blocking, started (allreduce_start + wait), and a
 *               message started as three pieces waited out of order;
 *   rows        one row's sum alone equals the same row inside messages of 2,
 *               17 and 300 rows at the first, a middle and the last offset,
 *               blocking and started, and equals the reference;
 *   bf16, f16   against the f32 rank-order sum of the widened inputs rounded
 *               once;
 *   NaN         a NaN on one rank makes that element NaN on every rank (f32
 *               and bf16, small and large messages) and leaves the others
 *               exact. */
#include <mpi.h>

#include "comm/comm.h"
#include "testutil.h"

static int g_rank, g_size;

/* one rank's random value: +-1e8, +-1 or +-1e-3 times a factor in [1, 2) */
static float wild(void) {
  static const float scale[3] = {1e8f, 1.0f, 1e-3f};
  const float v = scale[tu_int(0, 2)] * (float)tu_uniform(1.0, 2.0);
  return tu_int(0, 1) ? v : -v;
}

static void fill_wild(float *x, size_t n) {
  for (size_t i = 0; i < n; i++) x[i] = wild();
}

/* every rank's x[0..n) (f32) gathered on MPI_COMM_WORLD, summed in rank order */
static void reference_f32(const float *x, size_t n, float *ref) {
  float *all = tu_malloc(n * (size_t)g_size * sizeof *all);
  if (MPI_Allgather(x, (int)n, MPI_FLOAT, all, (int)n, MPI_FLOAT, MPI_COMM_WORLD) != MPI_SUCCESS) {
    fprintf(stderr, "FAIL: MPI_Allgather of the reference inputs\n");
    exit(1);
  }
  for (size_t i = 0; i < n; i++) {
    float acc = all[i];
    for (int r = 1; r < g_size; r++) acc += all[(size_t)r * n + i];
    ref[i] = acc;
  }
  free(all);
}

/* the same for 16-bit inputs: widened, summed in rank order in f32, rounded once */
static void reference_16(const uint16_t *x, size_t n, tpd_dtype dt, uint16_t *ref) {
  uint16_t *all = tu_malloc(n * (size_t)g_size * sizeof *all);
  if (MPI_Allgather(x, (int)n, MPI_UINT16_T, all, (int)n, MPI_UINT16_T, MPI_COMM_WORLD) != MPI_SUCCESS) {
    fprintf(stderr, "FAIL: MPI_Allgather of the reference inputs\n");
    exit(1);
  }
  for (size_t i = 0; i < n; i++) {
    float acc = tpd_load_f32(all, dt, i);
    for (int r = 1; r < g_size; r++) acc += tpd_load_f32(all, dt, (size_t)r * n + i);
    tpd_store_f32(ref, dt, i, acc);
  }
  free(all);
}

/* elements whose bits differ from the reference, or whose reference is not
 * finite (a NaN never passes); the first one goes to *first */
static size_t mismatches_f32(const float *got, const float *ref, size_t n, size_t *first) {
  size_t bad = 0;
  for (size_t i = 0; i < n; i++) {
    uint32_t a, b;
    memcpy(&a, &got[i], 4);
    memcpy(&b, &ref[i], 4);
    if (!isfinite(ref[i]) || a != b) {
      if (!bad) *first = i;
      bad++;
    }
  }
  return bad;
}

static size_t mismatches_16(const uint16_t *got, const uint16_t *ref, size_t n, tpd_dtype dt, size_t *first) {
  size_t bad = 0;
  for (size_t i = 0; i < n; i++)
    if (!isfinite(tpd_load_f32(ref, dt, i)) || got[i] != ref[i]) {
      if (!bad) *first = i;
      bad++;
    }
  return bad;
}

#define CHECK_BITS_F32(got, ref, n, what, ...)                                                              \
  do {                                                                                                     \
    size_t first_ = 0;                                                                                     \
    const size_t bad_ = mismatches_f32((got), (ref), (n), &first_);                                        \
    CHECK(bad_ == 0, "rank %d: " what ": %zu of %zu elements differ from the rank-order sum (first [%zu]: %.9g, " \
          "want %.9g)", g_rank, __VA_ARGS__, bad_, (size_t)(n), first_, bad_ ? (got)[first_] : 0.0,             \
          bad_ ? (ref)[first_] : 0.0);                                                                     \
  } while (0)

static void allreduce(tpd_comm *c, void *buf, size_t n, tpd_dtype dt, int started) {
  if (!started) {
    CHECK_OK(c->ops->allreduce(c, buf, n, dt, NULL));
    return;
  }
  tpd_comm_req req = {0};
  CHECK_OK(c->ops->allreduce_start(c, buf, n, dt, NULL, &req));
  CHECK_OK(c->ops->wait(c, &req));
}

static const size_t SIZES[] = {1, 7, 64, 1000, 4096, 16385, 21846, 65537, 300000};
enum { N_SIZES = sizeof SIZES / sizeof SIZES[0] };

/* every size, blocking and started, and the message started as three pieces */
static void check_sizes(tpd_comm *c) {
  for (int s = 0; s < N_SIZES; s++) {
    const size_t n = SIZES[s];
    float *x = tu_malloc(n * sizeof *x), *ref = tu_malloc(n * sizeof *ref), *buf = tu_malloc(n * sizeof *buf);
    fill_wild(x, n);
    reference_f32(x, n, ref);
    for (int started = 0; started < 2; started++) {
      memcpy(buf, x, n * sizeof *buf);
      allreduce(c, buf, n, TPD_F32, started);
      CHECK_BITS_F32(buf, ref, n, "%s f32 all-reduce of %zu", started ? "started" : "blocking", n);
    }
    /* three pieces in flight at once, waited last first */
    memcpy(buf, x, n * sizeof *buf);
    const size_t cut[4] = {0, n / 3, n - n / 5, n};
    tpd_comm_req req[3] = {{0}};
    for (int k = 0; k < 3; k++)
      CHECK_OK(c->ops->allreduce_start(c, buf + cut[k], cut[k + 1] - cut[k], TPD_F32, NULL, &req[k]));
    for (int k = 2; k >= 0; k--) CHECK_OK(c->ops->wait(c, &req[k]));
    CHECK_BITS_F32(buf, ref, n, "f32 all-reduce of %zu started as 3 pieces", n);
    free(x), free(ref), free(buf);
  }
}

/* one row alone, and inside larger messages at several offsets */
static void check_rows(tpd_comm *c) {
  enum { D = 1000 };
  static const int ROWS[] = {2, 17, 300};
  float row[D], alone[D], ref[D];
  fill_wild(row, D);
  reference_f32(row, D, ref);
  memcpy(alone, row, sizeof alone);
  allreduce(c, alone, D, TPD_F32, 0);
  CHECK_BITS_F32(alone, ref, D, "a row of %d alone", D);
  for (int k = 0; k < 3; k++) {
    const int R = ROWS[k];
    const int at[3] = {0, R / 2, R - 1};
    float *big = tu_malloc((size_t)R * D * sizeof *big);
    for (int started = 0; started < 2; started++)
      for (int j = 0; j < 3; j++) {
        fill_wild(big, (size_t)R * D); /* other rows: fresh each time */
        memcpy(big + (size_t)at[j] * D, row, sizeof row);
        allreduce(c, big, (size_t)R * D, TPD_F32, started);
        CHECK_BITS_F32(big + (size_t)at[j] * D, alone, D, "the row as row %d of %d (%s) against the row alone", at[j],
                       R, started ? "started" : "blocking");
      }
    free(big);
  }
}

static void check_16(tpd_comm *c, tpd_dtype dt) {
  static const size_t N16[] = {7, 1000, 40000, 300000};
  for (int s = 0; s < 4; s++) {
    const size_t n = N16[s];
    uint16_t *x = tu_malloc(n * 2), *ref = tu_malloc(n * 2), *buf = tu_malloc(n * 2);
    for (size_t i = 0; i < n; i++) { /* f16: magnitudes 1e3 down to 1e-8, so the sum of 4 stays finite */
      const float v = wild();
      tpd_store_f32(x, dt, i, dt == TPD_F16 ? v * 1e-5f : v);
    }
    reference_16(x, n, dt, ref);
    for (int started = 0; started < 2; started++) {
      memcpy(buf, x, n * 2);
      allreduce(c, buf, n, dt, started);
      size_t first = 0;
      const size_t bad = mismatches_16(buf, ref, n, dt, &first);
      CHECK(bad == 0,
            "rank %d: %s %s all-reduce of %zu: %zu elements differ from the f32 rank-order sum rounded once "
            "(first [%zu]: %.9g, want %.9g)",
            g_rank, started ? "started" : "blocking", tpd_dtype_name(dt), n, bad, first,
            bad ? tpd_load_f32(buf, dt, first) : 0.0, bad ? tpd_load_f32(ref, dt, first) : 0.0);
    }
    free(x), free(ref), free(buf);
  }
}

/* a NaN on the last rank at one element: NaN there everywhere, the rest exact */
static void check_nan(tpd_comm *c) {
  static const size_t NN[] = {64, 300000};
  for (int s = 0; s < 2; s++)
    for (int bf = 0; bf < 2; bf++)
      for (int started = 0; started < 2; started++) {
        const size_t n = NN[s], at = n / 2 + 1;
        float *x = tu_malloc(n * 4), *ref = tu_malloc(n * 4), *got = tu_malloc(n * 4);
        uint16_t *b = tu_malloc(n * 2);
        fill_wild(x, n);
        if (bf) { /* bf16-exact inputs: the f32 reference then is the sum of what was sent */
          for (size_t i = 0; i < n; i++) x[i] = tpd_bf16_to_f32(tpd_f32_to_bf16(x[i]));
        }
        if (g_rank == g_size - 1) x[at] = NAN;
        reference_f32(x, n, ref);
        if (bf) {
          for (size_t i = 0; i < n; i++) b[i] = tpd_f32_to_bf16(x[i]);
          allreduce(c, b, n, TPD_BF16, started);
          for (size_t i = 0; i < n; i++) {
            got[i] = tpd_bf16_to_f32(b[i]);
            ref[i] = tpd_bf16_to_f32(tpd_f32_to_bf16(ref[i]));
          }
        } else {
          memcpy(got, x, n * 4);
          allreduce(c, got, n, TPD_F32, started);
        }
        CHECK(isnan(got[at]), "rank %d: %s %s all-reduce of %zu with a NaN on rank %d: element %zu is %g, not NaN",
              g_rank, started ? "started" : "blocking", bf ? "bf16" : "f32", n, g_size - 1, at, got[at]);
        got[at] = ref[at] = 0.5f; /* the rest must still be exact */
        CHECK_BITS_F32(got, ref, n, "%s %s all-reduce of %zu with a NaN at %zu, other elements",
                       started ? "started" : "blocking", bf ? "bf16" : "f32", n, at);
        free(x), free(ref), free(got), free(b);
      }
}

int main(int argc, char **argv) {
  tpd_comm *c = NULL;
  TU_TRY(tpd_comm_mpi_create(&argc, &argv, &c));
  g_rank = c->rank;
  g_size = c->size;
  if (g_rank == 0) tu_seed("test_allreduce_order");
  uint64_t seed = tu_state;
  TU_TRY(c->ops->host_broadcast(c, &seed, sizeof seed, 0));
  tu_state = seed + 0x9e3779b97f4a7c15ull * (uint64_t)(g_rank + 1);
  if (!tu_state) tu_state = 1;
  check_sizes(c);
  check_rows(c);
  check_16(c, TPD_BF16);
  check_16(c, TPD_F16);
  check_nan(c);
  char name[64];
  snprintf(name, sizeof name, "test_allreduce_order np %d rank %d", g_size, g_rank);
  const int verdict = tu_finish(name);
  tpd_comm_destroy(c);
  return verdict;
}
