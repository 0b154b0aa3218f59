/* What each rank reads from the checkpoint while it loads (issue 13, part 5).
 *
 * The page cache of every model file is dropped (fdatasync, then
 * posix_fadvise DONTNEED; mincore must then see none of the file), an engine
 * is created, and the bytes brought in from storage are measured two ways:
 * mincore over the files (pages now in the page cache) and /proc/self/io
 * read_bytes (bytes this process caused to be read), where the kernel counts
 * it.  The expected figure is computed here from the file headers and the
 * Megatron split written out below, not by the loader's or the shard plan's
 * code: the pages holding the rank's block of each sharded tensor (q/k/v and
 * gate/up rows, o and down columns, LM-head rows), the replicated norms, and
 * the headers.  The embedding is not read at load (its rows are read per
 * step).  Page granularity is part of the truth: a column block narrower
 * than a page still costs the pages it touches, so the check is against the
 * pages, within TOL bytes, and the exact share is printed beside it.
 *
 *   test_loadio inproc DIR     every rank of TP 1, 2 and 4, one after the other
 *                              in this process (a stand-in communicator of that
 *                              size and rank: the page cache is shared by the
 *                              processes of a host, so only ranks loaded one at
 *                              a time can be told apart by mincore)
 *   mpirun -np N test_loadio mpi DIR
 *                              the real ranks loading at once: each rank's
 *                              read_bytes (skipped where not counted) between
 *                              the pages only it needs and all its pages, their
 *                              sum and, by mincore on rank 0, the page cache
 *                              against the union of all ranks' pages
 *
 * Exits 77 (skip) when the page cache of DIR cannot be dropped (tmpfs). */
#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "runtime/engine/tpdecode.h"
#include "tests/testutil.h"

#ifdef TPD_HAVE_MPI
#include <mpi.h>
#endif

#define TOL (2.0 * 1024 * 1024) /* bytes: "within a few MB" */
#define MAX_FILES 8
#define MB(x) ((double)(x) / (1024.0 * 1024.0))

typedef struct {
  char path[4096];
  int fd;
  uint64_t size;
  uint8_t *map;     /* our own mapping, never touched: mincore only */
  uint8_t *want;    /* pages the rank should read, one byte each */
  uint64_t n_pages;
  uint64_t data_start; /* 8 + header length */
  cJSON *header;
} mfile;

static mfile files[MAX_FILES];
static int n_files;
static uint64_t page;
static int D, L, H, HKV, F, V, DH, TIED, ESZ;

/* ---------- files, page cache ---------- */

static void open_files(const char *dir) {
  DIR *d = opendir(dir);
  if (!d) {
    fprintf(stderr, "FAIL: cannot open %s: %s\n", dir, strerror(errno));
    exit(1);
  }
  struct dirent *de;
  while ((de = readdir(d))) {
    const size_t n = strlen(de->d_name);
    if (strncmp(de->d_name, "model", 5) || n < 12 || strcmp(de->d_name + n - 12, ".safetensors")) continue;
    if (n_files == MAX_FILES) {
      fprintf(stderr, "FAIL: more than %d safetensors files in %s\n", MAX_FILES, dir);
      exit(1);
    }
    mfile *f = &files[n_files++];
    snprintf(f->path, sizeof f->path, "%s/%s", dir, de->d_name);
    f->fd = open(f->path, O_RDONLY);
    struct stat sb;
    if (f->fd < 0 || fstat(f->fd, &sb)) {
      fprintf(stderr, "FAIL: cannot open %s: %s\n", f->path, strerror(errno));
      exit(1);
    }
    f->size = (uint64_t)sb.st_size;
    f->map = mmap(NULL, f->size, PROT_READ, MAP_SHARED, f->fd, 0);
    if (f->map == MAP_FAILED) {
      fprintf(stderr, "FAIL: cannot map %s: %s\n", f->path, strerror(errno));
      exit(1);
    }
    f->n_pages = (f->size + page - 1) / page;
    f->want = tu_malloc(f->n_pages);
    /* the header, read with pread so that our mapping stays untouched */
    uint8_t len8[8];
    if (pread(f->fd, len8, 8, 0) != 8) exit(1);
    uint64_t hlen = 0;
    for (int i = 0; i < 8; i++) hlen |= (uint64_t)len8[i] << (8 * i);
    char *h = tu_malloc(hlen + 1);
    if (pread(f->fd, h, hlen, 8) != (ssize_t)hlen) exit(1);
    h[hlen] = 0;
    f->header = cJSON_Parse(h);
    free(h);
    f->data_start = 8 + hlen;
    if (!f->header) {
      fprintf(stderr, "FAIL: %s: header is not JSON\n", f->path);
      exit(1);
    }
  }
  closedir(d);
  if (n_files == 0) {
    fprintf(stderr, "FAIL: no model*.safetensors in %s\n", dir);
    exit(1);
  }
}

static uint64_t resident_bytes(void) {
  uint64_t n = 0;
  for (int i = 0; i < n_files; i++) {
    unsigned char *vec = tu_malloc(files[i].n_pages);
    if (mincore(files[i].map, files[i].size, vec)) {
      fprintf(stderr, "FAIL: mincore %s: %s\n", files[i].path, strerror(errno));
      exit(1);
    }
    for (uint64_t p = 0; p < files[i].n_pages; p++) n += vec[p] & 1;
    free(vec);
  }
  return n * page;
}

/* Drops the files' pages from the page cache; 0 when mincore confirms it. */
static int evict(void) {
  for (int i = 0; i < n_files; i++) {
    fdatasync(files[i].fd); /* dirty pages cannot be dropped */
    posix_fadvise(files[i].fd, 0, 0, POSIX_FADV_DONTNEED);
  }
  return resident_bytes() == 0 ? 0 : -1;
}

/* read_bytes of /proc/self/io, or -1 */
static long long read_bytes(void) {
  FILE *f = fopen("/proc/self/io", "r");
  if (!f) return -1;
  char line[128];
  long long v = -1;
  while (fgets(line, sizeof line, f))
    if (!strncmp(line, "read_bytes:", 11)) v = atoll(line + 11);
  fclose(f);
  return v;
}

/* ---------- the expected pages, from the headers and the Megatron split ---------- */

typedef struct {
  mfile *f;
  uint64_t offset; /* absolute, in the file */
  int64_t rows, cols;
} tensor_at;

static tensor_at locate(const char *name) {
  for (int i = 0; i < n_files; i++) {
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(files[i].header, name);
    if (!e) continue;
    const cJSON *offs = cJSON_GetObjectItemCaseSensitive(e, "data_offsets");
    const cJSON *shape = cJSON_GetObjectItemCaseSensitive(e, "shape");
    tensor_at t = {&files[i], files[i].data_start + (uint64_t)cJSON_GetArrayItem(offs, 0)->valuedouble,
                   (int64_t)cJSON_GetArrayItem(shape, 0)->valuedouble, 1};
    if (cJSON_GetArraySize(shape) == 2) t.cols = (int64_t)cJSON_GetArrayItem(shape, 1)->valuedouble;
    else t.rows = 1, t.cols = (int64_t)cJSON_GetArrayItem(shape, 0)->valuedouble;
    return t;
  }
  fprintf(stderr, "FAIL: tensor %s is in no file\n", name);
  exit(1);
}

static void want_range(mfile *f, uint64_t begin, uint64_t n_bytes) {
  if (!n_bytes) return;
  for (uint64_t p = begin / page; p <= (begin + n_bytes - 1) / page; p++) f->want[p] = 1;
}

/* rows [r0, r1) x columns [c0, c1) of a tensor; returns the exact bytes */
static uint64_t want_block(const char *name, int64_t r0, int64_t r1, int64_t c0, int64_t c1) {
  const tensor_at t = locate(name);
  for (int64_t r = r0; r < r1; r++)
    want_range(t.f, t.offset + (uint64_t)(r * t.cols + c0) * ESZ, (uint64_t)(c1 - c0) * ESZ);
  return (uint64_t)(r1 - r0) * (uint64_t)(c1 - c0) * ESZ;
}

/* Marks what rank `rank` of `tp` must read; returns its exact share in bytes.
 * Heads, KV heads, FFN columns and vocab rows divide evenly in this model
 * (checked in main), so each rank's block is its index times the size. */
static uint64_t expect(int tp, int rank, uint64_t *want_bytes) {
  for (int i = 0; i < n_files; i++) {
    memset(files[i].want, 0, files[i].n_pages);
    want_range(&files[i], 0, files[i].data_start); /* the header */
  }
  const int64_t q0 = (int64_t)rank * (H / tp) * DH, q1 = q0 + (int64_t)(H / tp) * DH;
  const int64_t k0 = (int64_t)rank * (HKV / tp) * DH, k1 = k0 + (int64_t)(HKV / tp) * DH;
  const int64_t f0 = (int64_t)rank * (F / tp), f1 = f0 + F / tp;
  const int64_t v0 = (int64_t)rank * (V / tp), v1 = v0 + V / tp;
  uint64_t share = 0;
  char n[160];
  for (int l = 0; l < L; l++) {
#define W(x) (snprintf(n, sizeof n, "model.layers.%d.%s", l, x), n)
    share += want_block(W("self_attn.q_proj.weight"), q0, q1, 0, D);
    share += want_block(W("self_attn.k_proj.weight"), k0, k1, 0, D);
    share += want_block(W("self_attn.v_proj.weight"), k0, k1, 0, D);
    share += want_block(W("self_attn.o_proj.weight"), 0, D, q0, q1);
    share += want_block(W("mlp.gate_proj.weight"), f0, f1, 0, D);
    share += want_block(W("mlp.up_proj.weight"), f0, f1, 0, D);
    share += want_block(W("mlp.down_proj.weight"), 0, D, f0, f1);
    share += want_block(W("input_layernorm.weight"), 0, 1, 0, D);
    share += want_block(W("post_attention_layernorm.weight"), 0, 1, 0, D);
#undef W
  }
  share += want_block("model.norm.weight", 0, 1, 0, D);
  share += want_block(TIED ? "model.embed_tokens.weight" : "lm_head.weight", v0, v1, 0, D);
  uint64_t pages = 0;
  for (int i = 0; i < n_files; i++)
    for (uint64_t p = 0; p < files[i].n_pages; p++) pages += files[i].want[p];
  *want_bytes = pages * page;
  return share;
}

static void read_config(const char *dir) {
  char path[4096];
  snprintf(path, sizeof path, "%s/config.json", dir);
  FILE *f = fopen(path, "rb");
  if (!f) {
    fprintf(stderr, "FAIL: cannot open %s\n", path);
    exit(1);
  }
  char buf[8192];
  const size_t n = fread(buf, 1, sizeof buf - 1, f);
  fclose(f);
  buf[n] = 0;
  cJSON *c = cJSON_Parse(buf);
#define GET(key) (cJSON_GetObjectItemCaseSensitive(c, key) ? (int)cJSON_GetObjectItemCaseSensitive(c, key)->valuedouble : 0)
  D = GET("hidden_size"), L = GET("num_hidden_layers"), H = GET("num_attention_heads");
  HKV = GET("num_key_value_heads"), F = GET("intermediate_size"), V = GET("vocab_size");
  DH = GET("head_dim") ? GET("head_dim") : D / H;
  TIED = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(c, "tie_word_embeddings"));
  const cJSON *dt = cJSON_GetObjectItemCaseSensitive(c, "torch_dtype");
  ESZ = cJSON_IsString(dt) && !strcmp(dt->valuestring, "float32") ? 4 : 2;
#undef GET
  cJSON_Delete(c);
  if (H % 4 || HKV % 4 || F % 4 || V % 4) {
    fprintf(stderr, "FAIL: this test needs heads, KV heads, FFN and vocab divisible by 4\n");
    exit(1);
  }
}

static tpd_engine *load(const char *dir, tpd_comm *comm) {
  tpd_engine_opts o;
  tpd_engine_opts_init(&o);
  o.model_dir = dir;
  o.max_ctx = 64;
  o.n_threads = 1;
  tpd_engine *e = NULL;
  TU_TRY(tpd_engine_create(&o, comm, &e));
  return e;
}

/* One rank's figures against its expectation (a measure of -1: not taken); prints the row. */
static void check_rank(int tp, int rank, uint64_t share, uint64_t want, long long by_mincore, long long by_io) {
  char a[32] = "-", b[32] = "-";
  if (by_mincore >= 0) snprintf(a, sizeof a, "%.2f", MB(by_mincore));
  if (by_io >= 0) snprintf(b, sizeof b, "%.2f", MB(by_io));
  printf("loadio: TP %d rank %d: share %8.2f MiB, its pages %8.2f MiB; read: mincore %8s MiB, read_bytes %8s MiB\n",
         tp, rank, MB(share), MB(want), a, b);
  if (by_mincore >= 0)
    CHECK(by_mincore + TOL >= (double)want && by_mincore <= (double)want + TOL,
          "TP %d rank %d: %.2f MiB of the files came into the page cache; its pages are %.2f MiB", tp, rank,
          MB(by_mincore), MB(want));
  if (by_io >= 0)
    CHECK(by_io + TOL >= (double)want && by_io <= (double)want + TOL,
          "TP %d rank %d: read %.2f MiB from storage; its pages are %.2f MiB", tp, rank, MB(by_io), MB(want));
}

/* ---------- one process, each rank in turn ---------- */

static tpd_status stub_allgather(tpd_comm *c, const void *send, void *recv, size_t n_bytes) {
  for (int r = 0; r < c->size; r++) memcpy((uint8_t *)recv + (size_t)r * n_bytes, send, n_bytes);
  return TPD_OK;
}
static tpd_status stub_refuse(tpd_comm *c) {
  return TPD_FAIL(TPD_ERR_INTERNAL, "test_loadio: the stand-in communicator does only host_allgather");
}

static int run_inproc(const char *dir) {
  static const tpd_comm_ops ops = {.name = "loadio-stand-in", .host_allgather = stub_allgather,
                                   .barrier = stub_refuse};
  const long long rb_probe = read_bytes();
  int have_rb = -1; /* unknown until TP 1 */
  uint64_t total = 0;
  for (int i = 0; i < n_files; i++) total += files[i].size;
  printf("loadio: %d file(s), %.1f MiB; dim %d, %d layers, %d heads (%d kv), ffn %d, vocab %d, %s, %d-byte "
         "weights, %llu-byte pages\n",
         n_files, MB(total), D, L, H, HKV, F, V,
         TIED ? "tied" : "untied", ESZ, (unsigned long long)page);
  for (int tp = 1; tp <= 4; tp *= 2)
    for (int rank = 0; rank < tp; rank++) {
      tpd_comm comm = {.ops = &ops, .rank = rank, .size = tp, .local_rank = 0, .local_size = 1};
      if (evict()) {
        printf("SKIP: test_loadio: the page cache of %s cannot be dropped (a tmpfs?): set TMPDIR to a disk\n", dir);
        return 77;
      }
      const long long rb0 = read_bytes();
      tpd_engine *e = load(dir, &comm);
      const long long rb1 = read_bytes();
      const long long got = (long long)resident_bytes();
      uint64_t want = 0;
      const uint64_t share = expect(tp, rank, &want);
      if (have_rb < 0) have_rb = rb_probe >= 0 && rb1 - rb0 > 0;
      check_rank(tp, rank, share, want, got, have_rb ? rb1 - rb0 : -1);
      tpd_engine_destroy(e);
    }
  if (!have_rb) printf("loadio: /proc/self/io read_bytes does not count here: mincore alone\n");
  return tu_finish("test_loadio inproc");
}

/* ---------- real ranks under mpirun ---------- */

static int run_mpi(int *argc, char ***argv, const char *dir) {
#ifdef TPD_HAVE_MPI
  tpd_comm *comm = NULL;
  TU_TRY(tpd_comm_mpi_create(argc, argv, &comm));
  const int rank = comm->rank, tp = comm->size;
  if (tp > 8) {
    fprintf(stderr, "FAIL: test_loadio mpi: at most 8 ranks\n");
    return 1;
  }
  MPI_Barrier(MPI_COMM_WORLD); /* every rank has read the headers */
  int ok = 1;
  if (rank == 0) ok = evict() == 0;
  MPI_Bcast(&ok, 1, MPI_INT, 0, MPI_COMM_WORLD);
  if (!ok) {
    if (rank == 0) printf("SKIP: test_loadio: the page cache of %s cannot be dropped (a tmpfs?)\n", dir);
    tpd_comm_destroy(comm);
    return 77;
  }
  const long long rb0 = read_bytes();
  tpd_engine *e = load(dir, comm);
  const long long rb1 = read_bytes();
  MPI_Barrier(MPI_COMM_WORLD);
  uint64_t want = 0;
  const uint64_t share = expect(tp, rank, &want);
  /* each rank's read_bytes, in rank order */
  long long mine[3] = {(long long)share, (long long)want, rb0 >= 0 ? rb1 - rb0 : -1}, all[3 * 8];
  MPI_Gather(mine, 3, MPI_LONG_LONG, all, 3, MPI_LONG_LONG, 0, MPI_COMM_WORLD);
  if (rank == 0) {
    /* Ranks loading at once share the pages where their blocks meet (a
     * column block narrower than a page): each such page is read once, by
     * whichever rank comes first.  So each rank reads at least the pages no
     * other rank needs and at most its own pages, and together they read
     * the union of their pages, once. */
    uint8_t *cnt[MAX_FILES];
    for (int i = 0; i < n_files; i++) cnt[i] = tu_malloc(files[i].n_pages), memset(cnt[i], 0, files[i].n_pages);
    for (int r = 0; r < tp; r++) {
      uint64_t w;
      expect(tp, r, &w);
      for (int i = 0; i < n_files; i++)
        for (uint64_t p = 0; p < files[i].n_pages; p++) cnt[i][p] += files[i].want[p];
    }
    uint64_t union_pages = 0;
    for (int i = 0; i < n_files; i++)
      for (uint64_t p = 0; p < files[i].n_pages; p++) union_pages += cnt[i][p] > 0;
    long long sum = 0;
    int have_rb = 1;
    for (int r = 0; r < tp; r++) {
      uint64_t w, excl = 0;
      expect(tp, r, &w);
      for (int i = 0; i < n_files; i++)
        for (uint64_t p = 0; p < files[i].n_pages; p++) excl += files[i].want[p] && cnt[i][p] == 1;
      excl *= page;
      const long long rb = all[3 * r + 2];
      if (rb < 0) have_rb = 0;
      sum += rb;
      printf("loadio: TP %d rank %d: share %8.2f MiB, its pages %8.2f MiB (%.2f MiB its alone); read_bytes %.2f MiB\n",
             tp, r, MB(all[3 * r]), MB(w), MB(excl), MB(rb));
      if (rb >= 0)
        CHECK(rb + TOL >= (double)excl && rb <= (double)w + TOL,
              "TP %d rank %d: read %.2f MiB from storage; its pages are %.2f MiB, %.2f MiB of them its alone", tp, r,
              MB(rb), MB(w), MB(excl));
    }
    const uint64_t got = resident_bytes(), want_all = union_pages * page;
    printf("loadio: TP %d, all ranks: their pages %.2f MiB; read: mincore %.2f MiB, read_bytes %.2f MiB in all\n", tp,
           MB(want_all), MB(got), have_rb ? MB(sum) : -1.0);
    CHECK(got + TOL >= (double)want_all && got <= (double)want_all + TOL,
          "TP %d: %.2f MiB came into the page cache; the ranks' pages are %.2f MiB", tp, MB(got), MB(want_all));
    if (have_rb && sum > 0)
      CHECK(sum + TOL >= (double)want_all && sum <= (double)want_all + TOL,
            "TP %d: the ranks read %.2f MiB in all; their pages are %.2f MiB", tp, MB(sum), MB(want_all));
    else
      printf("loadio: /proc/self/io read_bytes does not count here: the union by mincore alone\n");
    for (int i = 0; i < n_files; i++) free(cnt[i]);
  }
  tpd_engine_destroy(e);
  tpd_comm_destroy(comm);
  return rank == 0 ? tu_finish("test_loadio mpi") : 0;
#else
  (void)argc, (void)argv, (void)dir;
  printf("SKIP: test_loadio mpi: this build has no MPI\n");
  return 77;
#endif
}

int main(int argc, char **argv) {
  if (argc != 3 || (strcmp(argv[1], "inproc") && strcmp(argv[1], "mpi"))) {
    fprintf(stderr, "usage: test_loadio inproc|mpi MODEL_DIR\n");
    return 2;
  }
  page = (uint64_t)sysconf(_SC_PAGESIZE);
  read_config(argv[2]);
  open_files(argv[2]);
  const int rc = !strcmp(argv[1], "inproc") ? run_inproc(argv[2]) : run_mpi(&argc, &argv, argv[2]);
  for (int i = 0; i < n_files; i++) {
    munmap(files[i].map, files[i].size);
    close(files[i].fd);
    free(files[i].want);
    cJSON_Delete(files[i].header);
  }
  return rc;
}
