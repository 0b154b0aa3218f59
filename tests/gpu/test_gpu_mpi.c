/* Two MPI ranks sharing one GPU through the MPI communicator: the CUDA
 * engine at TP = 2 (device activations staged through host memory for the
 * all-reduces) against a CPU engine at TP = 1 on rank 0, on a synthetic
 * model: normalised error of the logits and equal greedy ids (outside near
 * ties) over a prefill of two sequences, decode steps of both, then decode
 * steps of one, teacher-forced with the CPU's tokens.
 * GT_NCCL=1: the engine's communicator is NCCL over the MPI one instead (needs
 * one GPU per rank; the CPU emulation runs it with the engine's overlap:
 * micro-batch ping-pong, chunked all-reduce, graphs with the comm stream).
 * With GT_NCCL=1, then the numerics policy at TP = 2 (tests/gpu/numerics.h,
 * docs/cuda.md): every conformance-pack case on the cuda engine over NCCL
 * with f32 activations -- all-reduces in f32 -- must give the pack's greedy
 * ids exactly, its logits within 1e-4, and stay within the f32 bound of the
 * float64 reference.
 * Run under mpirun -np 2.  Every rank exits 77 when any rank has no CUDA
 * device, else all exit with rank 0's verdict. */
#include <stdint.h>
#include <unistd.h>

#include "launch/tools/synth.h"
#include "runtime/engine/tpdecode.h"
#define TU_WITH_CUDA /* the device helpers of tests/testutil.h */
#include "tests/testutil.h"
#include "tests/gpu/numerics.h"

static const char *PROG = "test_gpu_mpi";

typedef struct {
  int ok;
  char dir[1024];
  uint64_t seed;
} setup_msg;

int main(int argc, char **argv) {
  tpd_comm *mpi = tu_mpi_gpu_or_skip(&argc, &argv, PROG);
  if (!mpi) return TU_SKIP;
  /* rank 0 writes the model and picks the seed */
  setup_msg msg;
  memset(&msg, 0, sizeof msg);
  if (mpi->rank == 0) {
    tu_seed(PROG);
    msg.seed = tu_state;
    const char *tmp = getenv("TMPDIR");
    snprintf(msg.dir, sizeof msg.dir, "%s/tpd-gpu-mpi-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    tpd_synth_spec s;
    msg.ok = mkdtemp(msg.dir) != NULL && tpd_synth_preset("small", &s) == TPD_OK;
    if (msg.ok) {
      s.n_layers = 2, s.vocab = 1001, s.seed = tu_next();
      msg.ok = tpd_synth_write(&s, msg.dir) == TPD_OK;
    }
  }
  TU_TRY(mpi->ops->host_broadcast(mpi, &msg, sizeof msg, 0));
  if (!msg.ok) {
    if (mpi->rank == 0) printf("FAIL: could not write the synthetic model (%s)\n", tpd_last_error());
    tpd_comm_destroy(mpi);
    return 1;
  }
  tu_state = msg.seed;

  tpd_comm *comm = mpi;
  if (getenv("GT_NCCL")) {
#ifdef TPD_HAVE_NCCL
    TU_TRY(tpd_comm_nccl_create(mpi, -1, &comm));
#else
    if (mpi->rank == 0) printf("SKIP: GT_NCCL=1 but this build has no NCCL\n");
    tpd_comm_destroy(mpi);
    return TU_SKIP;
#endif
  }
  tpd_engine_opts o;
  tpd_engine_opts_init(&o);
  o.model_dir = msg.dir;
  o.backend = "cuda";
  o.n_threads = 1;
  o.max_ctx = 128;
  o.max_seqs = 2;
  o.max_step_tokens = 64;
  o.kv_block_size = 16;
  o.device = -1;
  tpd_engine *eg = NULL, *ec = NULL;
  tpd_comm *single = NULL;
  TU_TRY(tpd_engine_create(&o, comm, &eg));
  if (mpi->rank == 0) {
    TU_TRY(tpd_comm_single_create(&single));
    o.backend = "cpu";
    o.kv_cache = "f32"; /* the f32 reference (auto would pick bf16 for a bf16 model) */
    o.activations = "f32"; /* (auto rounds bf16 weights' matmul inputs on a CPU whose vdpbf16ps outruns its FMA) */
    o.n_threads = 2;
    TU_TRY(tpd_engine_create(&o, single, &ec));
  }
  const int V = tpd_engine_config(eg)->vocab;
  int sg[2] = {0, 0}, sc[2] = {0, 0};
  for (int s = 0; s < 2; s++) {
    TU_TRY(tpd_engine_seq_open(eg, &sg[s]));
    if (ec) TU_TRY(tpd_engine_seq_open(ec, &sc[s]));
  }
  const int plen[2] = {33, 12};
  int32_t prompt[2][33];
  for (int s = 0; s < 2; s++)
    for (int i = 0; i < plen[s]; i++) prompt[s][i] = (int32_t)tu_int(0, V - 1);
  float *lg = tu_malloc(sizeof(float) * 2 * (size_t)V), *lc = tu_malloc(sizeof(float) * 2 * (size_t)V);
  int32_t feed[2] = {0, 0}, next_g[2] = {0, 0}, next_c[2] = {0, 0};
  tu_cmp worst = {0, 0};
  int mismatches = 0;
  for (int step = 0; step < 7; step++) {
    const int n_seq = step < 4 ? 2 : 1; /* prefill 2, decode 2 (x3), decode 1 (x3) */
    tpd_step_item it[2];
    memset(it, 0, sizeof it);
    for (int s = 0; s < n_seq; s++) {
      it[s].n_tokens = step == 0 ? plen[s] : 1;
      it[s].tokens = step == 0 ? prompt[s] : &feed[s];
      it[s].slot = sg[s];
      it[s].stream = (uint64_t)s;
    }
    TU_TRY(tpd_engine_step(eg, it, n_seq, next_g, lg));
    if (ec) {
      for (int s = 0; s < n_seq; s++) it[s].slot = sc[s];
      TU_TRY(tpd_engine_step(ec, it, n_seq, next_c, lc));
      for (int s = 0; s < n_seq; s++) {
        const float *a = lg + (size_t)s * V, *b = lc + (size_t)s * V;
        const tu_cmp c = tu_compare(a, V, b, V, 1, V);
        worst.err = tu_worst(worst.err, c.err); /* NaN-safe running maximum */
        worst.n_nan += c.n_nan;
        int best = 0;
        for (int i = 1; i < V; i++)
          if (b[i] > b[best]) best = i;
        double second = -INFINITY;
        for (int i = 0; i < V; i++)
          if (i != best && b[i] > second) second = b[i];
        if (next_g[s] != next_c[s] && b[best] - second > 0.05 * fabs(b[best])) mismatches++;
        feed[s] = next_c[s];
      }
    }
    TU_TRY(mpi->ops->host_broadcast(mpi, feed, sizeof feed, 0));
  }
  /* the numerics policy at TP = 2 on the conformance pack, over NCCL
   * (GT_NCCL=1): with f32 activations, and so f32 all-reduces, every case
   * gives the pack's greedy ids exactly */
  if (getenv("GT_NCCL")) {
    char dir[4096];
    gn_conformance_dir(dir, sizeof dir);
    gn_case cases[GN_MAX_CASES];
    const int n_cases = gn_load_cases(dir, cases, GN_MAX_CASES);
    if (mpi->rank == 0) {
      char what[4400];
      snprintf(what, sizeof what, "conformance pack %.3000s: %d cases", dir, n_cases);
      tu_expect(n_cases >= 6, what);
    }
    gn_stats f32_all;
    gn_stats_init(&f32_all);
    for (int i = 0; i < n_cases; i++) {
      gn_case *pc = &cases[i];
      double *ref = NULL;
      if (mpi->rank == 0) gn_reference(dir, pc, &ref);
      int32_t *picks = tu_malloc(sizeof(int32_t) * (size_t)pc->n);
      int *with_logits = tu_malloc(sizeof(int) * (size_t)pc->n);
      float *logits = tu_malloc(sizeof(float) * (size_t)pc->n * pc->V);
      gn_logit_steps(pc, 0, with_logits);
      char path[4200];
      snprintf(path, sizeof path, "%.3000s/%.120s", dir, pc->model);
      tpd_engine_opts po;
      tpd_engine_opts_init(&po);
      po.model_dir = path;
      po.backend = "cuda";
      po.activations = "f32";
      po.n_threads = 1;
      po.max_seqs = 1;
      po.max_ctx = pc->np + pc->n;
      po.device = -1;
      tpd_engine *pe = NULL;
      TU_TRY(tpd_engine_create(&po, comm, &pe));
      tpd_engine_info pinfo;
      tpd_engine_get_info(pe, &pinfo);
      TU_TRY(gn_forced_run(pe, pc, pc->n, with_logits, picks, logits));
      tpd_engine_destroy(pe);
      if (mpi->rank == 0) {
        if (!ref) {
          printf("FAIL %s: the float64 reference model did not load\n", pc->model);
          tu_count(0); /* a failure */
        } else {
          tu_expect(pinfo.tp == 2 && pinfo.act_dtype == TPD_F32, "f32  TP=2 engine: 2 ranks, f32 activations");
          gn_check_f32(pc, dir, picks, logits, with_logits, ref, 2, &f32_all);
        }
      }
      free(picks), free(with_logits), free(logits), free(ref);
    }
    if (mpi->rank == 0) gn_stats_print("f32  TP=2", &f32_all);
  }

  int verdict = 0;
  if (mpi->rank == 0) {
    char what[160];
    snprintf(what, sizeof what, "cuda engine TP=2 (%s comm) vs cpu TP=1: logits", comm->ops->name);
    tu_report(what, worst, 3e-2);
    snprintf(what, sizeof what, "cuda engine TP=2 (%s comm) vs cpu TP=1: greedy ids", comm->ops->name);
    tu_expect(mismatches == 0, what);
    verdict = tu_finish(PROG);
  }
  TU_TRY(mpi->ops->host_broadcast(mpi, &verdict, sizeof verdict, 0));
  tpd_engine_destroy(eg);
  tpd_engine_destroy(ec);
  tpd_comm_destroy(single);
  if (comm != mpi) tpd_comm_destroy(comm);
  TU_TRY(mpi->ops->barrier(mpi));
  if (mpi->rank == 0) {
    char p[1200];
    snprintf(p, sizeof p, "%s/config.json", msg.dir);
    unlink(p);
    snprintf(p, sizeof p, "%s/model.safetensors", msg.dir);
    unlink(p);
    rmdir(msg.dir);
  }
  free(lg), free(lc);
  tpd_comm_destroy(mpi);
  return verdict;
}
