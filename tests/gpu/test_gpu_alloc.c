/* The memory plan on the CUDA backend (docs/architecture.md, "Memory
 * plan"): decode steps allocate no device memory, and upload only the rows
 * of the block table that changed.
 *
 * The program is linked with -Wl,--wrap=cudaMalloc,--wrap=cudaMemcpyAsync:
 * every cudaMalloc of tpdecode (and of this test) is counted while a window
 * is open, and every host-to-device cudaMemcpyAsync into the engine's device
 * block table adds its bytes.  The engine (one rank, a synthetic model,
 * 4-token KV blocks, a context long enough for split attention, graphs on)
 * prefills random prompts, then decodes at batch 1 and 3 -- the first decode
 * step of each batch size captures a graph, where workspaces used to grow.
 * Per decode step: no cudaMalloc, and table bytes = (rows whose sequence
 * crosses into a new block this step) x the row's bytes, computed here from
 * the sequence lengths, plus the row of a sequence that left before the step
 * (a released row is cleared).  First the counters prove they see a
 * cudaMalloc and a copy of the test; and the plan's step arena, KV arena
 * and workspace must each be one cudaMalloc made by create.
 * Exit 77 when no CUDA device is present. */
#include <stdint.h>
#include <unistd.h>

#include "launch/tools/synth.h"
#include "runtime/engine/engine_internal.h"
#include "runtime/engine/tpdecode.h"
#define TU_WITH_CUDA
#include "tests/testutil.h"

static const char *PROG = "test_gpu_alloc";
enum { MAX_SEQS = 3, BLOCK = 4, MAX_CTX = 1024, N_DECODE = 9 };

/* ---- the counters ---- */
static int g_window, g_recording;
static long g_mallocs;
static size_t g_sizes[1024]; /* cudaMalloc sizes while recording */
static int g_n_sizes;
static size_t g_table_bytes;
static const uint8_t *g_table;     /* the engine's device block table */
static size_t g_table_cap;

cudaError_t __real_cudaMalloc(void **p, size_t n);
cudaError_t __wrap_cudaMalloc(void **p, size_t n);
cudaError_t __real_cudaMemcpyAsync(void *dst, const void *src, size_t n, enum cudaMemcpyKind k, cudaStream_t s);
cudaError_t __wrap_cudaMemcpyAsync(void *dst, const void *src, size_t n, enum cudaMemcpyKind k, cudaStream_t s);

cudaError_t __wrap_cudaMalloc(void **p, size_t n) {
  if (g_window) g_mallocs++;
  if (g_recording && g_n_sizes < 1024) g_sizes[g_n_sizes++] = n;
  return __real_cudaMalloc(p, n);
}

cudaError_t __wrap_cudaMemcpyAsync(void *dst, const void *src, size_t n, enum cudaMemcpyKind k, cudaStream_t s) {
  const uint8_t *d = dst;
  if (g_window && k == cudaMemcpyHostToDevice && g_table && d >= g_table && d < g_table + g_table_cap)
    g_table_bytes += n;
  return __real_cudaMemcpyAsync(dst, src, n, k, s);
}

static void check_counters(void) {
  void *p = NULL;
  g_window = 1;
  TU_CUDA(cudaMalloc(&p, 4096));
  g_table = p, g_table_cap = 4096;
  uint8_t host[256];
  memset(host, 7, sizeof host);
  TU_CUDA(cudaMemcpyAsync((uint8_t *)p + 512, host, sizeof host, cudaMemcpyHostToDevice, 0));
  TU_CUDA(cudaMemcpyAsync((uint8_t *)p + 4096 - 1, host, 1, cudaMemcpyHostToDevice, 0));
  TU_CUDA(cudaDeviceSynchronize());
  g_window = 0;
  tu_expect(g_mallocs == 1 && g_table_bytes == sizeof host + 1,
            "the counters see a cudaMalloc and host-to-device copies into a region");
  TU_CUDA(cudaFree(p));
  g_mallocs = 0, g_table_bytes = 0, g_table = NULL, g_table_cap = 0;
}

/* ---- decode ---- */
static void run_case(tpd_engine *e, int batch, int *ok_mallocs, int *ok_table) {
  const int V = tpd_engine_config(e)->vocab;
  const size_t row_bytes = sizeof(int32_t) * (size_t)((MAX_CTX + BLOCK - 1) / BLOCK);
  int slots[MAX_SEQS];
  int32_t prompt[MAX_SEQS][9], next[MAX_SEQS];
  tpd_step_item it[MAX_SEQS];
  for (int i = 0; i < batch; i++) {
    TU_TRY(tpd_engine_seq_open(e, &slots[i]));
    const int n = tu_int(2, 9);
    for (int j = 0; j < n; j++) prompt[i][j] = tu_int(0, V - 1);
    it[i] = (tpd_step_item){.slot = slots[i], .n_tokens = n, .tokens = prompt[i], .stream = (uint64_t)i};
  }
  TU_TRY(tpd_engine_step(e, it, batch, next, NULL));
  for (int s = 0; s < N_DECODE; s++) {
    size_t want = 0;
    if (s == N_DECODE / 2 && batch > 1) { /* a sequence leaves: its row is cleared */
      tpd_engine_seq_close(e, slots[--batch]);
      want += row_bytes;
    }
    for (int i = 0; i < batch; i++) {
      it[i].n_tokens = 1;
      it[i].tokens = &next[i];
      if (tpd_engine_seq_len(e, slots[i]) % BLOCK == 0) want += row_bytes; /* the new token opens a block */
    }
    g_mallocs = 0, g_table_bytes = 0;
    g_window = 1;
    CHECK_OK(tpd_engine_step(e, it, batch, next, NULL));
    g_window = 0;
    if (g_mallocs) {
      *ok_mallocs = 0;
      printf("     batch %d, decode step %d: %ld cudaMalloc calls\n", batch, s, g_mallocs);
    }
    if (g_table_bytes != want) {
      *ok_table = 0;
      printf("     batch %d, decode step %d: %zu bytes of block table uploaded, %zu changed\n", batch, s,
             g_table_bytes, want);
    }
  }
  for (int i = 0; i < batch; i++) tpd_engine_seq_close(e, slots[i]);
}

int main(void) {
  tu_require_gpu(PROG);
  tu_seed(PROG);
  check_counters();
  tpd_comm *comm = NULL;
  TU_TRY(tpd_comm_single_create(&comm));
  char dir[4096];
  const char *tmp = getenv("TMPDIR");
  snprintf(dir, sizeof dir, "%s/tpd-gpu-alloc-XXXXXX", tmp && *tmp ? tmp : "/tmp");
  if (!mkdtemp(dir)) {
    printf("FAIL cannot create a temporary directory\n");
    return 1;
  }
  tpd_synth_spec spec;
  TU_TRY(tpd_synth_preset("tiny", &spec));
  spec.dtype = TPD_BF16, spec.max_pos = MAX_CTX, spec.seed = tu_next();
  TU_TRY(tpd_synth_write(&spec, dir));
  tpd_engine_opts o = {TPD_ENGINE_OPTS_INIT, .model_dir = dir, .backend = "cuda", .max_seqs = MAX_SEQS, .max_ctx = MAX_CTX,
                       .max_step_tokens = 32, .kv_block_size = BLOCK, .device = -1};
  tpd_engine *e = NULL;
  g_recording = 1;
  TU_TRY(tpd_engine_create(&o, comm, &e));
  g_recording = 0;
  /* the plan the engine reports is what it allocated: the step and KV arenas
   * and the backend's workspace block, one cudaMalloc each */
  tpd_engine_info in;
  tpd_engine_get_info(e, &in);
  const double plan[3] = {in.act_bytes, in.kv_bytes, in.workspace_bytes};
  int found = 0;
  for (int k = 0; k < 3; k++)
    for (int i = 0; i < g_n_sizes; i++)
      if ((double)g_sizes[i] == plan[k]) {
        found++;
        break;
      }
  tu_expect(found == 3 && in.act_bytes > 0 && in.kv_bytes > 0 && in.workspace_bytes > 0,
            "the planned step arena, KV arena and workspace are each one cudaMalloc of that size");
  g_table = (const uint8_t *)e->d_table;
  g_table_cap = sizeof(int32_t) * (size_t)e->kv.max_slots * (size_t)e->kv.max_blocks;
  int ok_mallocs = 1, ok_table = 1;
  run_case(e, 1, &ok_mallocs, &ok_table);
  run_case(e, 3, &ok_mallocs, &ok_table);
  run_case(e, 1, &ok_mallocs, &ok_table); /* slot 0 reused: its cleared row, then new blocks */
  tu_expect(ok_mallocs, "no cudaMalloc in decode steps (batch 1 and 3, graph captures included)");
  tu_expect(ok_table, "each decode step uploads exactly the block-table rows that changed");
  tpd_engine_destroy(e);
  tpd_comm_destroy(comm);
  const char *files[] = {"config.json", "model.safetensors"};
  for (int i = 0; i < 2; i++) {
    char p[4200];
    snprintf(p, sizeof p, "%s/%s", dir, files[i]);
    unlink(p);
  }
  rmdir(dir);
  return tu_finish(PROG);
}
