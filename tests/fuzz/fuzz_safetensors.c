/* Fuzz target: safetensors headers and model.safetensors.index.json
 * (runtime/model/safetensors.c).
 *
 * The first byte chooses what the rest is:
 *   even  a whole .safetensors file (8-byte length, JSON header, data),
 *         opened with tpd_st_open_file;
 *   odd   a model.safetensors.index.json, opened with tpd_st_open in a
 *         scratch folder that holds the two shards of tests/fuzz/data/
 *         (model-00001-of-00002.safetensors, model-00002-of-00002.safetensors).
 * On success every tensor must lie inside its file with n_bytes equal to
 * shape x dtype size, and be found by name. */
#include <cjson/cJSON.h>
#include <sys/stat.h>

#include "runtime/model/safetensors.h"
#include "tests/fuzz/fuzz_util.h"

static char g_file[4200], g_dir[4200], g_index[4300];
static uint64_t g_shard_size[2];
static const char *g_shards[2] = {"model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"};

/* the reader numbers files in the order the index's weight_map first names
 * them: the size of file k, from the index text (only the two shards exist) */
static void file_sizes(const uint8_t *index, size_t n, uint64_t sizes[2]) {
  cJSON *root = cJSON_ParseWithLength((const char *)index, n);
  const cJSON *wm = cJSON_GetObjectItemCaseSensitive(root, "weight_map"), *e;
  int k = 0, seen[2] = {0, 0};
  sizes[0] = sizes[1] = 0;
  cJSON_ArrayForEach(e, wm) {
    for (int i = 0; i < 2; i++)
      if (cJSON_IsString(e) && !strcmp(e->valuestring, g_shards[i]) && !seen[i] && k < 2) {
        seen[i] = 1;
        sizes[k++] = g_shard_size[i];
      }
  }
  cJSON_Delete(root);
}

static void setup(void) {
  if (g_file[0]) return;
  fz_quiet();
  const char *scratch = fz_scratch_dir();
  snprintf(g_file, sizeof g_file, "%s/fuzz.safetensors", scratch);
  snprintf(g_dir, sizeof g_dir, "%s/sharded", scratch);
  mkdir(g_dir, 0755);
  snprintf(g_index, sizeof g_index, "%s/model.safetensors.index.json", g_dir);
  for (int i = 0; i < 2; i++) {
    size_t n = 0;
    char *bytes = fz_data_file(g_shards[i], &n);
    char path[4400];
    snprintf(path, sizeof path, "%s/%s", g_dir, g_shards[i]);
    fz_write(path, bytes, n);
    g_shard_size[i] = n;
    free(bytes);
  }
}

static uint64_t elem_size(const char *name) {
  if (!strcmp(name, "F64") || !strcmp(name, "I64") || !strcmp(name, "U64")) return 8;
  if (!strcmp(name, "F32") || !strcmp(name, "I32") || !strcmp(name, "U32")) return 4;
  if (!strcmp(name, "BF16") || !strcmp(name, "F16") || !strcmp(name, "I16") || !strcmp(name, "U16")) return 2;
  return 1;
}

static void check_ok(tpd_st *st, int sharded, const uint64_t sizes[2]) {
  const int n = tpd_st_count(st);
  FZ_CHECK(n >= 0, "count %d", n);
  for (int i = 0; i < n; i++) {
    const tpd_st_tensor *t = tpd_st_at(st, i);
    FZ_CHECK(t && t->name, "tensor %d", i);
    FZ_CHECK(t->ndim >= 0 && t->ndim <= TPD_ST_MAX_DIMS, "%s: ndim %d", t->name, t->ndim);
    FZ_CHECK(t->file >= 0 && t->file < (sharded ? 2 : 1), "%s: file %d", t->name, t->file);
    const uint64_t fsize = sizes[t->file];
    FZ_CHECK(t->offset >= 8 && t->offset <= fsize && t->n_bytes <= fsize - t->offset,
             "%s: bytes [%llu, +%llu) outside a file of %llu", t->name, (unsigned long long)t->offset,
             (unsigned long long)t->n_bytes, (unsigned long long)fsize);
    uint64_t elems = 1;
    for (int d = 0; d < t->ndim; d++) {
      FZ_CHECK(t->shape[d] >= 0, "%s: shape[%d] %lld", t->name, d, (long long)t->shape[d]);
      elems *= (uint64_t)t->shape[d]; /* cannot overflow: n_bytes fits the file */
      if (elems == 0) break;
    }
    FZ_CHECK(elems * elem_size(t->dtype_name) == t->n_bytes, "%s: %llu bytes for shape x %s", t->name,
             (unsigned long long)t->n_bytes, t->dtype_name);
    FZ_CHECK(tpd_st_find(st, t->name) == t, "%s: not found by name", t->name);
    const uint8_t *p = tpd_st_data(st, t);
    FZ_CHECK(p != NULL, "%s: no data", t->name);
    volatile uint8_t sink = 0;
    if (t->n_bytes) sink ^= p[0] ^ p[t->n_bytes - 1]; /* inside the mapping (ASan / SIGSEGV otherwise) */
    (void)sink;
    if (t->ndim == 1 || t->ndim == 2) {
      const tpd_st_tensor *got = NULL;
      tpd_status s = tpd_st_expect(st, t->name, t->ndim, t->shape[0], t->ndim == 2 ? t->shape[1] : 0, &got);
      if (s == TPD_OK)
        FZ_CHECK(got == t, "%s: expect gave another tensor", t->name);
      else
        fz_check_error(s);
    }
  }
  if (!tpd_st_find(st, "no.such.tensor")) fz_check_error(tpd_st_expect(st, "no.such.tensor", 1, 1, 0, NULL));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1) return 0;
  setup();
  const int sharded = data[0] & 1;
  tpd_st *st = NULL;
  tpd_status s;
  if (sharded) {
    fz_write(g_index, data + 1, size - 1);
    s = tpd_st_open(g_dir, &st);
  } else {
    fz_write(g_file, data + 1, size - 1);
    s = tpd_st_open_file(g_file, &st);
  }
  if (s == TPD_OK) {
    FZ_CHECK(st != NULL, "success without a reader");
    uint64_t sizes[2] = {size - 1, 0};
    if (sharded) file_sizes(data + 1, size - 1, sizes);
    check_ok(st, sharded, sizes);
  } else {
    FZ_CHECK(st == NULL, "a reader on failure");
    fz_check_error(s);
  }
  tpd_st_close(st);
  return 0;
}
