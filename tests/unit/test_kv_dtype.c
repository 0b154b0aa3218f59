/* The KV cache dtype the engine picks (docs/architecture.md, "KV cache
 * dtype"): kv_cache "auto" on the cpu backend follows the engine's weight
 * dtype (tpd_engine_info.weight_dtype): bf16 for bf16, f32 for f32, f16 and
 * checkpoints whose layer-0 q/k/v mix dtypes (the loader widens those to
 * f32).  The mixed checkpoints are the synthetic bf16/f32 models rewritten
 * with chosen tensors converted.  Then the precedence of the option over
 * TPD_KV_CACHE, and a bad TPD_KV_CACHE as an error naming it. */
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include "comm/comm.h"
#include "launch/tools/synth.h"
#include "runtime/engine/tpdecode.h"
#include "runtime/model/safetensors.h"
#include "testutil.h"

static char g_tmp[256];
static tpd_comm *g_comm;

/* Rewrites dir/model.safetensors with every tensor whose name contains one
 * of `convert` (NULL-terminated) stored as `to`, values converted. */
static int convert_tensors(const char *dir, const char *const *convert, tpd_dtype to) {
  char path[512], tmp[520];
  snprintf(path, sizeof path, "%s/model.safetensors", dir);
  snprintf(tmp, sizeof tmp, "%s.tmp", path);
  tpd_st *st = NULL;
  if (tpd_st_open_file(path, &st) != TPD_OK) return -1;
  const int n = tpd_st_count(st);
  cJSON *hdr = cJSON_CreateObject();
  size_t total = 0;
  int n_conv = 0;
  tpd_dtype *dt = calloc((size_t)n, sizeof *dt);
  for (int i = 0; i < n; i++) {
    const tpd_st_tensor *t = tpd_st_at(st, i);
    dt[i] = (tpd_dtype)t->dtype;
    for (const char *const *c = convert; *c; c++)
      if (strstr(t->name, *c)) dt[i] = to, n_conv++;
    const size_t elems = t->n_bytes / tpd_dtype_size((tpd_dtype)t->dtype);
    cJSON *e = cJSON_AddObjectToObject(hdr, t->name);
    cJSON_AddStringToObject(e, "dtype", dt[i] == TPD_F32 ? "F32" : dt[i] == TPD_BF16 ? "BF16" : "F16");
    cJSON *shape = cJSON_AddArrayToObject(e, "shape");
    for (int d = 0; d < t->ndim; d++) cJSON_AddItemToArray(shape, cJSON_CreateNumber((double)t->shape[d]));
    cJSON *off = cJSON_AddArrayToObject(e, "data_offsets");
    cJSON_AddItemToArray(off, cJSON_CreateNumber((double)total));
    total += elems * tpd_dtype_size(dt[i]);
    cJSON_AddItemToArray(off, cJSON_CreateNumber((double)total));
  }
  char *text = cJSON_PrintUnformatted(hdr);
  const size_t hl = strlen(text), pad = (hl + 7) / 8 * 8;
  FILE *f = fopen(tmp, "wb");
  int rc = f ? 0 : -1;
  for (int b = 0; b < 8 && f; b++) fputc((int)(((uint64_t)pad >> (8 * b)) & 0xff), f);
  if (f) fwrite(text, 1, hl, f);
  for (size_t p = hl; p < pad && f; p++) fputc(' ', f);
  for (int i = 0; i < n && f; i++) {
    const tpd_st_tensor *t = tpd_st_at(st, i);
    const size_t elems = t->n_bytes / tpd_dtype_size((tpd_dtype)t->dtype);
    void *buf = malloc(elems * tpd_dtype_size(dt[i]));
    tpd_convert(buf, dt[i], tpd_st_data(st, t), (tpd_dtype)t->dtype, elems);
    if (fwrite(buf, tpd_dtype_size(dt[i]), elems, f) != elems) rc = -1;
    free(buf);
  }
  if (f && fclose(f) != 0) rc = -1;
  if (rc == 0) rc = rename(tmp, path);
  cJSON_free(text);
  cJSON_Delete(hdr);
  free(dt);
  tpd_st_close(st);
  return rc == 0 && n_conv > 0 ? 0 : -1;
}

typedef struct {
  const char *name;
  tpd_dtype file_dtype;         /* the synthetic model's dtype */
  const char *convert[4];       /* tensors (name substrings) rewritten as conv_to */
  tpd_dtype conv_to;
  tpd_dtype want_weight;        /* tpd_engine_info.weight_dtype */
} wcase;

/* Opens dir with kv_cache (NULL: TPD_KV_CACHE, else auto); info of the engine, 0 when it failed. */
static int open_info(const char *dir, const char *kv_cache, tpd_engine_info *info) {
  tpd_engine_opts o;
  tpd_engine_opts_init(&o);
  o.model_dir = dir;
  o.n_threads = 1;
  o.max_ctx = 16;
  o.kv_cache = kv_cache;
  tpd_engine *e = NULL;
  if (tpd_engine_create(&o, g_comm, &e) != TPD_OK) return 0;
  tpd_engine_get_info(e, info);
  tpd_engine_destroy(e);
  return 1;
}

/* K and V of every layer, from config.json's numbers (TP 1) */
static double kv_bytes_per_token(const tpd_synth_spec *s, tpd_dtype kv) {
  return 2.0 * s->n_layers * s->n_kv_heads * (s->head_dim ? s->head_dim : s->dim / s->n_heads) *
         (double)tpd_dtype_size(kv);
}

static void write_case(const wcase *c, tpd_synth_spec *s, char *dir, size_t cap) {
  CHECK_OK(tpd_synth_preset("tiny", s));
  s->dtype = c->file_dtype;
  s->seed = (unsigned long long)tu_next();
  snprintf(dir, cap, "%s/%s", g_tmp, c->name);
  CHECK_OK(tpd_synth_write(s, dir));
  if (c->convert[0]) CHECK(convert_tensors(dir, c->convert, c->conv_to) == 0, "%s: rewriting the checkpoint", c->name);
}

static void test_auto(const wcase *c) {
  tpd_synth_spec s;
  char dir[300];
  write_case(c, &s, dir, sizeof dir);
  const char *const kvs[] = {NULL, "auto"};
  for (int k = 0; k < 2; k++) {
    tpd_engine_info info;
    const int ok = open_info(dir, kvs[k], &info);
    CHECK(ok, "%s kv_cache %s: engine: %s", c->name, kvs[k] ? kvs[k] : "NULL", tpd_last_error());
    if (!ok) continue;
    const tpd_dtype want_kv = c->want_weight == TPD_BF16 ? TPD_BF16 : TPD_F32;
    CHECK(info.weight_dtype == c->want_weight && info.kv_dtype == want_kv,
          "%s kv_cache %s: weights %s (want %s), KV %s (want %s)", c->name, kvs[k] ? kvs[k] : "NULL",
          tpd_dtype_name(info.weight_dtype), tpd_dtype_name(c->want_weight), tpd_dtype_name(info.kv_dtype),
          tpd_dtype_name(want_kv));
    CHECK(info.kv_bytes_per_token == kv_bytes_per_token(&s, want_kv), "%s: %.0f KV bytes per token, want %.0f",
          c->name, info.kv_bytes_per_token, kv_bytes_per_token(&s, want_kv));
  }
}

/* The option wins over TPD_KV_CACHE; TPD_KV_CACHE applies when it is NULL. */
static void test_precedence(void) {
  const wcase b = {"prec-bf16", TPD_BF16, {NULL}, TPD_F32, TPD_BF16};
  const wcase f = {"prec-f32", TPD_F32, {NULL}, TPD_F32, TPD_F32};
  tpd_synth_spec s;
  char db[300], df[300];
  write_case(&b, &s, db, sizeof db);
  write_case(&f, &s, df, sizeof df);
  const struct { const char *dir, *env, *opt; tpd_dtype want; } cases[] = {
      {db, "f32", NULL, TPD_F32},   {db, "f32", "auto", TPD_BF16}, {db, "f32", "bf16", TPD_BF16},
      {db, "bf16", "f32", TPD_F32}, {df, "bf16", NULL, TPD_BF16},  {df, "bf16", "auto", TPD_F32},
      {df, "auto", NULL, TPD_F32},  {db, "auto", NULL, TPD_BF16},  {df, NULL, "bf16", TPD_BF16},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    if (cases[i].env) setenv("TPD_KV_CACHE", cases[i].env, 1);
    else unsetenv("TPD_KV_CACHE");
    tpd_engine_info info;
    const int ok = open_info(cases[i].dir, cases[i].opt, &info);
    CHECK(ok && info.kv_dtype == cases[i].want, "%s, TPD_KV_CACHE=%s, kv_cache %s: KV %s, want %s (%s)",
          cases[i].dir == db ? "bf16" : "f32", cases[i].env ? cases[i].env : "(unset)",
          cases[i].opt ? cases[i].opt : "NULL", ok ? tpd_dtype_name(info.kv_dtype) : "none",
          tpd_dtype_name(cases[i].want), ok ? "" : tpd_last_error());
  }
  setenv("TPD_KV_CACHE", "bogus", 1);
  tpd_engine_info info;
  CHECK(!open_info(db, NULL, &info) && strstr(tpd_last_error(), "'bogus'") && !strchr(tpd_last_error(), '\n'),
        "TPD_KV_CACHE=bogus: one line naming it: %s", tpd_last_error());
  CHECK(open_info(db, "f32", &info) && info.kv_dtype == TPD_F32, "kv_cache f32 beside TPD_KV_CACHE=bogus: %s",
        tpd_last_error());
  unsetenv("TPD_KV_CACHE");
}

int main(void) {
  tu_seed("test_kv_dtype");
  unsetenv("TPD_KV_CACHE");
  snprintf(g_tmp, sizeof g_tmp, "/tmp/tpd-test-kv-dtype-%d", (int)getpid());
  mkdir(g_tmp, 0755);
  CHECK_OK(tpd_comm_single_create(&g_comm));
  static const wcase cases[] = {
      {"f32", TPD_F32, {NULL}, TPD_F32, TPD_F32},
      {"bf16", TPD_BF16, {NULL}, TPD_F32, TPD_BF16},
      {"f16", TPD_F16, {NULL}, TPD_F32, TPD_F16},
      /* layer 0's k projection in f32: the q/k/v stack widens to f32 */
      {"bf16-k0-f32", TPD_BF16, {"layers.0.self_attn.k_proj.weight", NULL}, TPD_F32, TPD_F32},
      /* layer 0's q/k/v in f16, the rest bf16: f16 weights, an f32 KV cache */
      {"bf16-qkv0-f16", TPD_BF16, {"layers.0.self_attn.q_proj.w", "layers.0.self_attn.k_proj.w",
                                   "layers.0.self_attn.v_proj.w", NULL}, TPD_F16, TPD_F16},
      /* an f32 checkpoint whose layer-0 q/k/v are bf16: stored bf16, so bf16 KV */
      {"f32-qkv0-bf16", TPD_F32, {"layers.0.self_attn.q_proj.w", "layers.0.self_attn.k_proj.w",
                                  "layers.0.self_attn.v_proj.w", NULL}, TPD_BF16, TPD_BF16},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) test_auto(&cases[i]);
  test_precedence();
  tpd_comm_destroy(g_comm);
  char cmd[400];
  snprintf(cmd, sizeof cmd, "rm -rf %s", g_tmp);
  if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", g_tmp);
  return tu_finish("test_kv_dtype");
}
