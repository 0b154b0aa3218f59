/* The engine at TP = 2 on the CPU emulation of CUDA (tests/gpu/emu), small
 * enough to run once per scheduler seed: two MPI ranks, NCCL emulated over
 * MPI, the engine's overlap on (compute and comm streams ordered by events,
 * micro-batch ping-pong in the prefill, chunked all-reduces in decode steps
 * captured as graphs), against the CPU engine at TP = 1 on rank 0 on a
 * synthetic 2-layer model: a prefill of two sequences, decode steps of
 * both, then of one, teacher-forced with the CPU's tokens.  Checks the
 * normalised error of the logits and equal greedy ids outside near ties.
 * gpu.emu.engine_tp2 runs it as it is; gpu.emu.drop_wait_{prefill,graph}_tp2
 * run it with one cudaStreamWaitEvent dropped (TPD_EMU_DROP_WAIT) and need a
 * scheduler seed for which it fails.  Run under mpirun -np 2; all ranks exit with rank 0's
 * verdict. */
#include <stdint.h>
#include <unistd.h>

#include "launch/tools/synth.h"
#include "runtime/engine/tpdecode.h"
#define TU_WITH_CUDA /* the device helpers of tests/testutil.h */
#include "tests/testutil.h"

static const char *PROG = "emu_engine_tp2";

int main(int argc, char **argv) {
  tpd_comm *mpi = tu_mpi_gpu_or_skip(&argc, &argv, PROG);
  if (!mpi) return TU_SKIP;
  struct {
    int ok;
    char dir[1024];
    uint64_t seed;
  } msg;
  memset(&msg, 0, sizeof msg);
  if (mpi->rank == 0) { /* rank 0 writes the model and picks the data seed */
    tu_seed(PROG);
    msg.seed = tu_state;
    const char *tmp = getenv("TMPDIR");
    snprintf(msg.dir, sizeof msg.dir, "%s/tpd-emu-tp2-XXXXXX", tmp && *tmp ? tmp : "/tmp");
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
  tpd_comm *nc = NULL;
  TU_TRY(tpd_comm_nccl_create(mpi, -1, &nc));
  tpd_engine_opts o;
  tpd_engine_opts_init(&o);
  o.model_dir = msg.dir;
  o.backend = "cuda";
  o.n_threads = 1;
  o.max_ctx = 64;
  o.max_seqs = 2;
  o.max_step_tokens = 32;
  o.kv_block_size = 16;
  o.device = -1;
  tpd_engine *eg = NULL, *ec = NULL;
  tpd_comm *single = NULL;
  TU_TRY(tpd_engine_create(&o, nc, &eg));
  TU_TRY(tpd_engine_set_option(eg, TPD_OPT_OVERLAP, 1));
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
  const int plen[2] = {20, 9};
  int32_t prompt[2][20];
  for (int s = 0; s < 2; s++)
    for (int i = 0; i < plen[s]; i++) prompt[s][i] = (int32_t)tu_int(0, V - 1);
  float *lg = tu_malloc(sizeof(float) * 2 * (size_t)V), *lc = tu_malloc(sizeof(float) * 2 * (size_t)V);
  int32_t feed[2] = {0, 0}, next_g[2] = {0, 0}, next_c[2] = {0, 0};
  tu_cmp worst = {0, 0};
  int mismatches = 0;
  for (int step = 0; step < 6; step++) {
    const int n_seq = step < 3 ? 2 : 1; /* prefill 2, decode 2 (x2), decode 1 (x3) */
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
        printf("     step %d sequence %d: logits err %.3e%s\n", step, s, c.err, c.n_nan ? " (NaN)" : "");
        if (!(c.err <= worst.err)) worst.err = c.err; /* NaN-safe running maximum */
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
  int verdict = 0;
  if (mpi->rank == 0) {
    tu_report("cuda engine TP=2 (emulated nccl, overlap, graphs) vs cpu TP=1: logits", worst, 3e-2);
    tu_expect(mismatches == 0, "cuda engine TP=2 (emulated nccl, overlap, graphs) vs cpu TP=1: greedy ids");
    verdict = tu_finish(PROG);
  }
  TU_TRY(mpi->ops->host_broadcast(mpi, &verdict, sizeof verdict, 0));
  tpd_engine_destroy(eg);
  tpd_engine_destroy(ec);
  tpd_comm_destroy(single);
  tpd_comm_destroy(nc);
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
