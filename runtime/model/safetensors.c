#include "runtime/model/safetensors.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "runtime/base/fileio.h"

/* 2^53: the largest range in which cJSON's doubles hold every integer */
#define MAX_EXACT 9007199254740992.0

typedef struct {
  char *path;
  const uint8_t *map;
  uint64_t size;
} st_file;

struct tpd_st {
  st_file *files;
  int n_files;
  tpd_st_tensor *tensors; /* sorted by name */
  int n_tensors;
};

static int dtype_from_name(const char *s, uint64_t *elem_bytes) {
  static const struct { const char *name; int dtype; uint64_t size; } table[] = {
      {"F32", TPD_F32, 4},  {"BF16", TPD_BF16, 2}, {"F16", TPD_F16, 2},  {"F64", -1, 8},
      {"I64", -1, 8},       {"U64", -1, 8},        {"I32", -1, 4},       {"U32", -1, 4},
      {"I16", -1, 2},       {"U16", -1, 2},        {"I8", -1, 1},        {"U8", -1, 1},
      {"BOOL", -1, 1},      {"F8_E4M3", -1, 1},    {"F8_E5M2", -1, 1},
  };
  for (size_t i = 0; i < sizeof table / sizeof table[0]; i++)
    if (!strcmp(s, table[i].name)) {
      *elem_bytes = table[i].size;
      return table[i].dtype;
    }
  *elem_bytes = 0;
  return -2;
}

static int cmp_tensor(const void *a, const void *b) {
  return strcmp(((const tpd_st_tensor *)a)->name, ((const tpd_st_tensor *)b)->name);
}

static tpd_status map_file(const char *path, st_file *f) {
  memset(f, 0, sizeof *f);
  f->path = strdup(path);
  if (!f->path) return TPD_FAIL(TPD_ERR_OOM, "out of memory");
  int fd = open(path, O_RDONLY);
  if (fd < 0) return TPD_FAIL(TPD_ERR_IO, "cannot open %s: %s", path, strerror(errno));
  struct stat sb;
  if (fstat(fd, &sb) != 0) {
    close(fd);
    return TPD_FAIL(TPD_ERR_IO, "cannot stat %s: %s", path, strerror(errno));
  }
  f->size = (uint64_t)sb.st_size;
  if (f->size < 8) {
    close(fd);
    return TPD_FAIL(TPD_ERR_IO, "%s: truncated: %llu bytes, too short for a safetensors header", path,
                    (unsigned long long)f->size);
  }
  void *m = mmap(NULL, f->size, PROT_READ, MAP_PRIVATE, fd, 0);
  close(fd);
  if (m == MAP_FAILED) return TPD_FAIL(TPD_ERR_IO, "cannot map %s: %s", path, strerror(errno));
  /* No read-around on a fault: the kernel would otherwise read up to the
   * device's read_ahead_kb (often MBs) around every touched page, the other
   * ranks' slices included.  The loader asks for exactly its ranges
   * (tpd_st_prefetch); a hint only, so its failure is not an error. */
  (void)madvise(m, f->size, MADV_RANDOM);
  f->map = m;
  return TPD_OK;
}

/* Parses one file's header and appends its tensors. */
static tpd_status parse_header(tpd_st *st, int file_idx) {
  const st_file *f = &st->files[file_idx];
  uint64_t hlen = 0;
  for (int i = 0; i < 8; i++) hlen |= (uint64_t)f->map[i] << (8 * i);
  if (hlen > f->size - 8)
    return TPD_FAIL(TPD_ERR_IO, "%s: truncated: header claims %llu bytes but the file has %llu", f->path,
                    (unsigned long long)hlen, (unsigned long long)f->size);
  const uint64_t data_start = 8 + hlen;
  const uint64_t data_size = f->size - data_start;
  cJSON *root = cJSON_ParseWithLength((const char *)f->map + 8, (size_t)hlen);
  if (!root || !cJSON_IsObject(root)) {
    cJSON_Delete(root);
    return TPD_FAIL(TPD_ERR_FORMAT, "%s: header is not a JSON object", f->path);
  }
  int n = cJSON_GetArraySize(root);
  tpd_st_tensor *grown = realloc(st->tensors, sizeof *grown * (size_t)(st->n_tensors + n));
  if (!grown) {
    cJSON_Delete(root);
    return TPD_FAIL(TPD_ERR_OOM, "out of memory");
  }
  st->tensors = grown;
  tpd_status status = TPD_OK;
  const cJSON *e;
  cJSON_ArrayForEach(e, root) {
    if (!strcmp(e->string, "__metadata__")) continue;
    tpd_st_tensor *t = &st->tensors[st->n_tensors];
    memset(t, 0, sizeof *t);
    const cJSON *dt = cJSON_GetObjectItemCaseSensitive(e, "dtype");
    const cJSON *shape = cJSON_GetObjectItemCaseSensitive(e, "shape");
    const cJSON *offs = cJSON_GetObjectItemCaseSensitive(e, "data_offsets");
    if (!cJSON_IsString(dt) || !cJSON_IsArray(shape) || !cJSON_IsArray(offs) || cJSON_GetArraySize(offs) != 2) {
      status = TPD_FAIL(TPD_ERR_FORMAT, "%s: tensor '%s': header entry lacks dtype, shape or data_offsets", f->path, e->string);
      break;
    }
    uint64_t elem = 0;
    t->dtype = dtype_from_name(dt->valuestring, &elem);
    if (t->dtype == -2) {
      status = TPD_FAIL(TPD_ERR_FORMAT, "%s: tensor '%s': unknown dtype \"%s\"", f->path, e->string, dt->valuestring);
      break;
    }
    snprintf(t->dtype_name, sizeof t->dtype_name, "%s", dt->valuestring);
    t->ndim = cJSON_GetArraySize(shape);
    if (t->ndim > TPD_ST_MAX_DIMS) {
      status = TPD_FAIL(TPD_ERR_FORMAT, "%s: tensor '%s': %d dimensions", f->path, e->string, t->ndim);
      break;
    }
    /* each dim a non-negative integer that a double holds exactly; the
     * element count, the byte count and the offsets checked for overflow */
    uint64_t n_elems = 1;
    int d = 0, zero = 0, overflow = 0;
    const cJSON *s;
    cJSON_ArrayForEach(s, shape) {
      if (!cJSON_IsNumber(s) || s->valuedouble < 0 || s->valuedouble != floor(s->valuedouble) ||
          s->valuedouble > MAX_EXACT) {
        status = TPD_FAIL(TPD_ERR_FORMAT, "%s: tensor '%s': shape[%d] is not a non-negative integer below 2^53",
                          f->path, e->string, d);
        break;
      }
      const uint64_t dim = (uint64_t)s->valuedouble;
      t->shape[d++] = (int64_t)dim;
      if (dim == 0) zero = 1;
      else if (n_elems > UINT64_MAX / dim) overflow = 1;
      else n_elems *= dim;
    }
    if (status != TPD_OK) break;
    if (zero) n_elems = 0, overflow = 0;
    if (overflow || n_elems > UINT64_MAX / elem) {
      status = TPD_FAIL(TPD_ERR_FORMAT, "%s: tensor '%s': shape x %s overflows 64 bits (header corrupt)", f->path,
                        e->string, t->dtype_name);
      break;
    }
    const cJSON *ob = cJSON_GetArrayItem(offs, 0), *oe = cJSON_GetArrayItem(offs, 1);
    if (!cJSON_IsNumber(ob) || !cJSON_IsNumber(oe) || ob->valuedouble != floor(ob->valuedouble) ||
        oe->valuedouble != floor(oe->valuedouble) || ob->valuedouble > MAX_EXACT || oe->valuedouble > MAX_EXACT) {
      status = TPD_FAIL(TPD_ERR_FORMAT, "%s: tensor '%s': data_offsets are not integers below 2^53", f->path, e->string);
      break;
    }
    const double b = ob->valuedouble, en = oe->valuedouble;
    if (b < 0 || en < b) {
      status = TPD_FAIL(TPD_ERR_FORMAT, "%s: tensor '%s': bad data_offsets", f->path, e->string);
      break;
    }
    if (en > (double)data_size) {
      status = TPD_FAIL(TPD_ERR_IO,
                        "%s: tensor '%s': data_offsets [%.0f, %.0f] lie past the end of the data (%llu bytes): "
                        "file truncated or header corrupt",
                        f->path, e->string, b, en, (unsigned long long)data_size);
      break;
    }
    /* en <= data_size, so neither the size nor data_start + b can overflow */
    t->offset = data_start + (uint64_t)b;
    t->n_bytes = (uint64_t)en - (uint64_t)b;
    if (t->n_bytes != n_elems * elem) {
      status = TPD_FAIL(TPD_ERR_FORMAT, "%s: tensor '%s': %llu bytes do not match shape x %s (%llu bytes)",
                        f->path, e->string, (unsigned long long)t->n_bytes, t->dtype_name,
                        (unsigned long long)(n_elems * elem));
      break;
    }
    t->file = file_idx;
    t->name = strdup(e->string);
    if (!t->name) {
      status = TPD_FAIL(TPD_ERR_OOM, "out of memory");
      break;
    }
    st->n_tensors++;
  }
  cJSON_Delete(root);
  return status;
}

static tpd_status finish(tpd_st *st) {
  /* no tensors (an empty index): tensors may be NULL, which qsort must not get */
  if (st->n_tensors > 1) qsort(st->tensors, (size_t)st->n_tensors, sizeof *st->tensors, cmp_tensor);
  for (int i = 1; i < st->n_tensors; i++)
    if (!strcmp(st->tensors[i].name, st->tensors[i - 1].name))
      return TPD_FAIL(TPD_ERR_FORMAT, "tensor '%s' appears twice (%s, %s)", st->tensors[i].name,
                      st->files[st->tensors[i - 1].file].path, st->files[st->tensors[i].file].path);
  return TPD_OK;
}

static tpd_st *st_new(int n_files) {
  tpd_st *st = calloc(1, sizeof *st);
  if (!st) return NULL;
  st->files = calloc((size_t)n_files, sizeof *st->files);
  if (!st->files) {
    free(st);
    return NULL;
  }
  return st;
}

tpd_status tpd_st_open_file(const char *path, tpd_st **out) {
  *out = NULL;
  tpd_st *st = st_new(1);
  if (!st) return TPD_FAIL(TPD_ERR_OOM, "out of memory");
  tpd_status s;
  st->n_files = 1;
  TPD_TRY_GOTO(map_file(path, &st->files[0]), s, fail);
  TPD_TRY_GOTO(parse_header(st, 0), s, fail);
  TPD_TRY_GOTO(finish(st), s, fail);
  *out = st;
  return TPD_OK;
fail:
  tpd_st_close(st);
  return s;
}

/* Sharded checkpoint: the set of files named by the index's weight_map. */
static tpd_status open_index(const char *dir, const char *index_path, tpd_st **out) {
  char *text = NULL;
  TPD_TRY(tpd_read_text_file(index_path, &text, NULL));
  cJSON *root = cJSON_Parse(text);
  free(text);
  const cJSON *wm = root ? cJSON_GetObjectItemCaseSensitive(root, "weight_map") : NULL;
  if (!cJSON_IsObject(wm)) {
    cJSON_Delete(root);
    return TPD_FAIL(TPD_ERR_FORMAT, "%s: no \"weight_map\" object", index_path);
  }
  /* distinct file names, in first-seen order */
  int n_map = cJSON_GetArraySize(wm);
  const char **names = calloc((size_t)n_map + 1, sizeof *names);
  tpd_st *st = st_new(n_map + 1);
  tpd_status s = TPD_OK;
  if (!names || !st) {
    s = TPD_FAIL(TPD_ERR_OOM, "out of memory");
    goto done;
  }
  int n_files = 0;
  const cJSON *e;
  cJSON_ArrayForEach(e, wm) {
    if (!cJSON_IsString(e)) {
      s = TPD_FAIL(TPD_ERR_FORMAT, "%s: weight_map entry '%s' is not a file name", index_path, e->string);
      goto done;
    }
    if (strchr(e->valuestring, '/')) {
      s = TPD_FAIL(TPD_ERR_FORMAT, "%s: weight_map file '%s' is not a plain file name", index_path, e->valuestring);
      goto done;
    }
    int k = 0;
    while (k < n_files && strcmp(names[k], e->valuestring)) k++;
    if (k == n_files) names[n_files++] = e->valuestring;
  }
  for (int k = 0; k < n_files; k++) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, names[k]);
    st->n_files = k + 1;
    TPD_TRY_GOTO(map_file(path, &st->files[k]), s, done);
    TPD_TRY_GOTO(parse_header(st, k), s, done);
  }
  TPD_TRY_GOTO(finish(st), s, done);
  /* every tensor the index names must be where the index says */
  cJSON_ArrayForEach(e, wm) {
    const tpd_st_tensor *t = tpd_st_find(st, e->string);
    if (!t) {
      s = TPD_FAIL(TPD_ERR_FORMAT, "%s: tensor '%s' is listed in the index but missing from %s", index_path,
                   e->string, e->valuestring);
      goto done;
    }
  }
done:
  free(names);
  cJSON_Delete(root);
  if (s != TPD_OK) {
    tpd_st_close(st);
    return s;
  }
  *out = st;
  return TPD_OK;
}

tpd_status tpd_st_open(const char *dir, tpd_st **out) {
  *out = NULL;
  if (!tpd_is_dir(dir)) return TPD_FAIL(TPD_ERR_IO, "model directory %s does not exist", dir);
  /* transformers' order: the single file first, then the index */
  char single[4096], index[4096];
  snprintf(single, sizeof single, "%s/model.safetensors", dir);
  snprintf(index, sizeof index, "%s/model.safetensors.index.json", dir);
  const int has_single = tpd_path_exists(single), has_index = tpd_path_exists(index);
  if (has_single) {
    if (has_index && tpd_log_rank() <= 0) /* one line, not one per rank */
      TPD_WARN("%s holds both model.safetensors and model.safetensors.index.json; using model.safetensors "
               "(as transformers does) and ignoring the index and its shards", dir);
    return tpd_st_open_file(single, out);
  }
  if (has_index) return open_index(dir, index, out);
  return TPD_FAIL(TPD_ERR_IO, "%s: neither model.safetensors nor model.safetensors.index.json exists", dir);
}

void tpd_st_close(tpd_st *st) {
  if (!st) return;
  for (int i = 0; i < st->n_files; i++) {
    if (st->files[i].map) munmap((void *)st->files[i].map, st->files[i].size);
    free(st->files[i].path);
  }
  for (int i = 0; i < st->n_tensors; i++) free(st->tensors[i].name);
  free(st->tensors);
  free(st->files);
  free(st);
}

int tpd_st_count(const tpd_st *st) { return st->n_tensors; }
const tpd_st_tensor *tpd_st_at(const tpd_st *st, int i) { return &st->tensors[i]; }

const tpd_st_tensor *tpd_st_find(const tpd_st *st, const char *name) {
  tpd_st_tensor key;
  key.name = (char *)name;
  if (st->n_tensors == 0) return NULL; /* tensors may be NULL, which bsearch must not get */
  return bsearch(&key, st->tensors, (size_t)st->n_tensors, sizeof key, cmp_tensor);
}

const uint8_t *tpd_st_data(const tpd_st *st, const tpd_st_tensor *t) {
  return st->files[t->file].map + t->offset;
}

void tpd_st_prefetch(const tpd_st *st, const tpd_st_tensor *t, uint64_t offset, uint64_t n_bytes) {
  const st_file *f = &st->files[t->file];
  if (n_bytes == 0 || offset >= t->n_bytes) return;
  if (n_bytes > t->n_bytes - offset) n_bytes = t->n_bytes - offset;
  const uint64_t page = (uint64_t)sysconf(_SC_PAGESIZE);
  const uint64_t begin = (t->offset + offset) / page * page, end = t->offset + offset + n_bytes;
  /* a hint: the bytes are read on first touch whatever it returns */
  (void)madvise((void *)(f->map + begin), (size_t)(end - begin), MADV_WILLNEED);
}

tpd_status tpd_st_expect(const tpd_st *st, const char *name, int ndim, int64_t d0, int64_t d1,
                         const tpd_st_tensor **out) {
  const tpd_st_tensor *t = tpd_st_find(st, name);
  if (!t) return TPD_FAIL(TPD_ERR_FORMAT, "missing tensor '%s'", name);
  if (t->dtype < 0)
    return TPD_FAIL(TPD_ERR_UNSUPPORTED, "tensor '%s' has dtype %s; expected F32, BF16 or F16", name, t->dtype_name);
  int ok = t->ndim == ndim && t->shape[0] == d0 && (ndim == 1 || t->shape[1] == d1);
  if (!ok) {
    char got[96] = "[";
    for (int i = 0; i < t->ndim; i++) {
      char b[24];
      snprintf(b, sizeof b, "%s%lld", i ? ", " : "", (long long)t->shape[i]);
      strncat(got, b, sizeof got - strlen(got) - 2);
    }
    strcat(got, "]");
    if (ndim == 1)
      return TPD_FAIL(TPD_ERR_FORMAT, "tensor '%s' has shape %s; config.json implies [%lld]", name, got, (long long)d0);
    return TPD_FAIL(TPD_ERR_FORMAT, "tensor '%s' has shape %s; config.json implies [%lld, %lld]", name, got,
                    (long long)d0, (long long)d1);
  }
  if (out) *out = t;
  return TPD_OK;
}
