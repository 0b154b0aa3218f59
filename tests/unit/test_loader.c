/* config.json parsing, safetensors reading (single and sharded), validation
 * of broken files, and the shard plan. */
#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include "badfiles.h"
#include "launch/tools/synth.h"
#include "runtime/model/config.h"
#include "runtime/base/fileio.h"
#include "runtime/model/safetensors.h"
#include "runtime/model/shard.h"
#include "runtime/engine/tpdecode.h"
#include "testutil.h"

static char g_tmp[256];

static const char *LLAMA2 =
    "{\"model_type\":\"llama\",\"hidden_size\":64,\"intermediate_size\":172,\"num_hidden_layers\":2,"
    "\"num_attention_heads\":4,\"num_key_value_heads\":2,\"vocab_size\":512,\"rms_norm_eps\":1e-5,"
    "\"max_position_embeddings\":256,\"rope_theta\":10000.0,\"rope_scaling\":null,\"hidden_act\":\"silu\","
    "\"eos_token_id\":[2,7]}";

/* Expects failure and that the message mentions `needle`. */
static void expect_config_error(const char *json, const char *needle) {
  tpd_model_config c;
  tpd_clear_error();
  tpd_status s = tpd_config_parse(json, "config.json", &c);
  CHECK(s != TPD_OK, "config accepted: %s", json);
  CHECK(strstr(tpd_last_error(), needle) != NULL, "message '%s' does not name '%s'", tpd_last_error(), needle);
  tpd_clear_error();
}

static void test_config(void) {
  tpd_model_config c;
  CHECK_OK(tpd_config_parse(LLAMA2, "x", &c));
  CHECK(c.dim == 64 && c.n_heads == 4 && c.n_kv_heads == 2 && c.head_dim == 16 && c.ffn_dim == 172, "llama2 sizes");
  CHECK(!c.rope_llama3 && !c.qkv_bias && !c.tie_embeddings && c.n_eos == 2 && c.eos_ids[1] == 7, "llama2 flags");
  const char *l3 =
      "{\"model_type\":\"llama\",\"hidden_size\":128,\"intermediate_size\":256,\"num_hidden_layers\":3,"
      "\"num_attention_heads\":8,\"num_key_value_heads\":2,\"head_dim\":32,\"vocab_size\":640,"
      "\"rope_theta\":500000.0,\"rope_scaling\":{\"rope_type\":\"llama3\",\"factor\":8.0,\"low_freq_factor\":1.0,"
      "\"high_freq_factor\":4.0,\"original_max_position_embeddings\":64},\"tie_word_embeddings\":true,"
      "\"rms_norm_eps\":1e-5}";
  CHECK_OK(tpd_config_parse(l3, "x", &c));
  CHECK(c.rope_llama3 && c.rope_factor == 8.0 && c.rope_orig_max_pos == 64 && c.tie_embeddings && c.head_dim == 32,
        "llama3 fields");
  /* llama3 frequencies: high frequencies unchanged, low ones divided by the factor */
  double f[16];
  tpd_rope_inv_freq(&c, f);
  CHECK(fabs(f[0] - 1.0) < 1e-15, "first frequency %.17g", f[0]);
  CHECK(fabs(f[15] - pow(500000.0, -30.0 / 32) / 8.0) < 1e-18, "last frequency scaled by 1/8");
  const char *q2 =
      "{\"model_type\":\"qwen2\",\"hidden_size\":64,\"intermediate_size\":100,\"num_hidden_layers\":1,"
      "\"num_attention_heads\":4,\"num_key_value_heads\":2,\"vocab_size\":100,\"sliding_window\":32,"
      "\"use_sliding_window\":false,\"tie_word_embeddings\":true,\"rms_norm_eps\":1e-6}";
  CHECK_OK(tpd_config_parse(q2, "x", &c));
  CHECK(c.qkv_bias && !c.o_bias && c.sliding_window == 0, "qwen2: q/k/v biases, no window");
  const char *mi =
      "{\"model_type\":\"mistral\",\"hidden_size\":64,\"intermediate_size\":100,\"num_hidden_layers\":1,"
      "\"num_attention_heads\":4,\"num_key_value_heads\":1,\"vocab_size\":100,\"sliding_window\":4096,"
      "\"rms_norm_eps\":1e-5}";
  CHECK_OK(tpd_config_parse(mi, "x", &c));
  CHECK(c.sliding_window == 4096 && c.n_kv_heads == 1, "mistral window");

  expect_config_error("{\"model_type\":\"gpt2\",\"hidden_size\":64}", "model_type");
  expect_config_error("not json", "JSON");
  expect_config_error(
      "{\"model_type\":\"llama\",\"intermediate_size\":1,\"num_hidden_layers\":1,\"num_attention_heads\":1,\"vocab_size\":1}",
      "hidden_size");
  expect_config_error(
      "{\"model_type\":\"llama\",\"hidden_size\":64,\"intermediate_size\":1,\"num_hidden_layers\":1,"
      "\"num_attention_heads\":4,\"vocab_size\":9,\"rms_norm_eps\":1e-5,\"rope_scaling\":{\"rope_type\":\"yarn\",\"factor\":4}}",
      "rope_scaling");
  expect_config_error(
      "{\"model_type\":\"llama\",\"hidden_size\":64,\"intermediate_size\":1,\"num_hidden_layers\":1,"
      "\"num_attention_heads\":4,\"vocab_size\":9,\"hidden_act\":\"gelu\"}",
      "hidden_act");
  expect_config_error(
      "{\"model_type\":\"llama\",\"hidden_size\":64,\"intermediate_size\":1,\"num_hidden_layers\":1,"
      "\"num_attention_heads\":4,\"num_key_value_heads\":3,\"vocab_size\":9}",
      "num_key_value_heads");
  expect_config_error(
      "{\"model_type\":\"qwen2\",\"hidden_size\":64,\"intermediate_size\":1,\"num_hidden_layers\":1,"
      "\"num_attention_heads\":4,\"num_key_value_heads\":4,\"vocab_size\":9,\"rms_norm_eps\":1e-6,"
      "\"use_sliding_window\":true}",
      "use_sliding_window");
  expect_config_error(
      "{\"model_type\":\"llama\",\"hidden_size\":\"64\",\"intermediate_size\":1,\"num_hidden_layers\":1,"
      "\"num_attention_heads\":4,\"vocab_size\":9}",
      "hidden_size");
}

static void test_shard_plan(void) {
  tpd_model_config c;
  CHECK_OK(tpd_config_parse(LLAMA2, "x", &c));
  tpd_shard_plan p;
  tpd_clear_error();
  CHECK(tpd_shard_plan_make(&c, 3, 0, &p) != TPD_OK && strstr(tpd_last_error(), "not divisible"),
        "TP 3 with 4 heads: %s", tpd_last_error());
  tpd_clear_error();
  for (int tp = 1; tp <= 4; tp *= 2) {
    int ffn = 0, vocab = 0, qh = 0;
    for (int r = 0; r < tp; r++) {
      CHECK_OK(tpd_shard_plan_make(&c, tp, r, &p));
      CHECK(p.ffn.begin == ffn, "ffn ranges contiguous");
      ffn = p.ffn.end;
      CHECK(p.vocab.begin == vocab, "vocab ranges contiguous");
      vocab = p.vocab.end;
      CHECK(p.q_head0 == qh && p.n_q_heads == 4 / tp, "q heads");
      qh += p.n_q_heads;
      /* every local query head's KV head is local */
      for (int h = p.q_head0; h < p.q_head0 + p.n_q_heads; h++) {
        const int kv = h / (c.n_heads / c.n_kv_heads);
        CHECK(kv >= p.kv_head0 && kv < p.kv_head0 + p.n_kv_heads, "tp %d rank %d: kv head %d not local", tp, r, kv);
      }
    }
    CHECK(ffn == c.ffn_dim && vocab == c.vocab && qh == c.n_heads, "tp %d covers everything", tp);
  }
  CHECK_OK(tpd_shard_plan_make(&c, 4, 3, &p));
  CHECK(p.n_kv_heads == 1 && p.kv_head0 == 1, "TP 4 > 2 KV heads: replicated head 1 on rank 3");
}

static void test_safetensors(void) {
  tpd_synth_spec s;
  CHECK_OK(tpd_synth_preset("tiny", &s));
  s.dtype = TPD_F16;
  s.seed = 5;
  char one[300], many[300];
  snprintf(one, sizeof one, "%s/one", g_tmp);
  snprintf(many, sizeof many, "%s/many", g_tmp);
  CHECK_OK(tpd_synth_write(&s, one));
  s.n_shards = 3;
  CHECK_OK(tpd_synth_write(&s, many));
  tpd_st *a = NULL, *b = NULL;
  CHECK_OK(tpd_st_open(one, &a));
  CHECK_OK(tpd_st_open(many, &b));
  if (!a || !b) return;
  CHECK(tpd_st_count(a) == tpd_st_count(b) && tpd_st_count(a) == 2 * 9 + 3, "tensor count %d", tpd_st_count(a));
  int files_seen[3] = {0}, diff = 0;
  for (int i = 0; i < tpd_st_count(a); i++) {
    const tpd_st_tensor *ta = tpd_st_at(a, i), *tb = tpd_st_find(b, ta->name);
    CHECK(tb != NULL, "%s missing from the sharded copy", ta->name);
    if (!tb) continue;
    files_seen[tb->file] = 1;
    CHECK(ta->dtype == TPD_F16 && tb->n_bytes == ta->n_bytes, "%s: dtype/size", ta->name);
    diff += memcmp(tpd_st_data(a, ta), tpd_st_data(b, tb), ta->n_bytes) != 0;
  }
  CHECK(diff == 0, "%d tensors differ between single and sharded files (values depend on seed and name only)", diff);
  CHECK(files_seen[0] && files_seen[1] && files_seen[2], "three shards used");
  const tpd_st_tensor *t;
  CHECK_OK(tpd_st_expect(a, "model.norm.weight", 1, 64, 0, &t));
  tpd_clear_error();
  CHECK(tpd_st_expect(a, "model.norm.weight", 1, 65, 0, NULL) != TPD_OK && strstr(tpd_last_error(), "[64]"),
        "shape mismatch message: %s", tpd_last_error());
  tpd_clear_error();
  CHECK(tpd_st_expect(a, "nope", 1, 1, 0, NULL) != TPD_OK && strstr(tpd_last_error(), "missing tensor 'nope'"),
        "missing tensor message: %s", tpd_last_error());
  tpd_clear_error();
  tpd_st_close(a);
  tpd_st_close(b);

  /* the same seed writes the same bytes; another seed does not */
  char again[300];
  snprintf(again, sizeof again, "%s/again", g_tmp);
  s.n_shards = 1;
  s.seed = 5;
  CHECK_OK(tpd_synth_write(&s, again));
  tpd_st *c = NULL;
  CHECK_OK(tpd_st_open(again, &c));
  CHECK_OK(tpd_st_open(one, &a));
  if (a && c) {
    const tpd_st_tensor *x = tpd_st_find(a, "lm_head.weight"), *y = tpd_st_find(c, "lm_head.weight");
    CHECK(x && y && !memcmp(tpd_st_data(a, x), tpd_st_data(c, y), x->n_bytes), "same seed, same weights");
  }
  tpd_st_close(a);
  tpd_st_close(c);
}

/* A folder with both model.safetensors and an index with shards (e.g. a
 * checkpoint re-saved in place): transformers loads the single file, so
 * must we, and say that the index is ignored. */
static void test_single_file_wins(void) {
  tpd_synth_spec s;
  CHECK_OK(tpd_synth_preset("tiny", &s));
  s.dtype = TPD_F32;
  char single[300], sharded[300], both[300], a[700], b[700];
  snprintf(single, sizeof single, "%s/wins-single", g_tmp);
  snprintf(sharded, sizeof sharded, "%s/wins-sharded", g_tmp);
  snprintf(both, sizeof both, "%s/wins-both", g_tmp);
  s.seed = tu_next();
  CHECK_OK(tpd_synth_write(&s, single));
  s.seed ^= 0x5bd1e995u; /* other weights in the shards */
  s.n_shards = 3;
  CHECK_OK(tpd_synth_write(&s, sharded));
  mkdir(both, 0755);
  int copied = 0;
  DIR *d = opendir(sharded);
  for (struct dirent *de; d && (de = readdir(d));) {
    if (strncmp(de->d_name, "model", 5)) continue; /* the index and the shards */
    snprintf(a, sizeof a, "%s/%s", sharded, de->d_name);
    snprintf(b, sizeof b, "%s/%s", both, de->d_name);
    CHECK(tpd_copy_file(a, b) == 0, "copying %s", a);
    copied++;
  }
  if (d) closedir(d);
  CHECK(copied == 4, "index and 3 shards copied (%d files)", copied);
  const char *own[] = {"config.json", "model.safetensors"};
  for (int i = 0; i < 2; i++) {
    snprintf(a, sizeof a, "%s/%s", single, own[i]);
    snprintf(b, sizeof b, "%s/%s", both, own[i]);
    CHECK(tpd_copy_file(a, b) == 0, "copying %s", a);
  }

  tpd_st *x = NULL, *y = NULL, *z = NULL;
  CHECK_OK(tpd_st_open(single, &x));
  CHECK_OK(tpd_st_open(sharded, &y));
  snprintf(a, sizeof a, "%s/stderr.txt", g_tmp);
  const int h = tpd_stderr_to_file(a);
  const tpd_status st = tpd_st_open(both, &z);
  tpd_stderr_restore(h);
  CHECK(h >= 0 && st == TPD_OK, "opening a folder with both: %s", tpd_last_error());
  if (x && y && z) {
    /* from model.safetensors: every tensor from one file (the shards are
     * three), with the single file's bytes, not the shards' */
    int same_as_single = 0, same_as_shards = 0, from_single_file = 0;
    const int file0 = tpd_st_count(z) > 0 ? tpd_st_at(z, 0)->file : -1;
    for (int i = 0; i < tpd_st_count(z); i++) {
      const tpd_st_tensor *t = tpd_st_at(z, i), *tx = tpd_st_find(x, t->name), *ty = tpd_st_find(y, t->name);
      if (!tx || !ty || tx->n_bytes != t->n_bytes || ty->n_bytes != t->n_bytes) continue;
      same_as_single += !memcmp(tpd_st_data(z, t), tpd_st_data(x, tx), t->n_bytes);
      same_as_shards += !memcmp(tpd_st_data(z, t), tpd_st_data(y, ty), t->n_bytes);
      from_single_file += t->file == file0;
    }
    const int n = tpd_st_count(z);
    CHECK(n == tpd_st_count(x) && same_as_single == n && from_single_file == n,
          "both present: %d of %d tensors from model.safetensors, %d equal to it", from_single_file, n, same_as_single);
    CHECK(same_as_shards < n / 2, "the shards' weights were used (%d of %d tensors equal)", same_as_shards, n);
  }
  char *log = NULL;
  CHECK_OK(tpd_read_text_file(a, &log, NULL));
  const char *nl = log ? strchr(log, '\n') : NULL;
  CHECK(log && strstr(log, "model.safetensors.index.json") && strstr(log, "warn") && nl && !nl[1],
        "expected one warning line naming the ignored index, got '%s'", log ? log : "");
  free(log);
  tpd_st_close(x);
  tpd_st_close(y);
  tpd_st_close(z);
}

/* Headers whose shape, byte count or offsets do not fit in 64 bits, or are
 * not integers: rejected at open, naming the tensor. */
static void expect_bad_header(const char *what, const char *header, size_t n_data, const char *tensor) {
  char path[400];
  snprintf(path, sizeof path, "%s/hdr-%s.safetensors", g_tmp, what);
  unsigned char data[64];
  for (size_t i = 0; i < sizeof data; i++) data[i] = (unsigned char)tu_next();
  CHECK(n_data <= sizeof data && tpd_write_st_file(path, header, data, n_data) == 0, "writing %s", path);
  tpd_st *st = NULL;
  tpd_clear_error();
  const tpd_status s = tpd_st_open_file(path, &st);
  CHECK(s != TPD_OK, "%s: header accepted: %s", what, header);
  char quoted[128];
  snprintf(quoted, sizeof quoted, "'%s'", tensor);
  CHECK(strstr(tpd_last_error(), quoted) != NULL, "%s: message '%s' does not name %s", what, tpd_last_error(), quoted);
  CHECK(strchr(tpd_last_error(), '\n') == NULL, "%s: message spans lines", what);
  tpd_clear_error();
  tpd_st_close(st);
}

static void test_header_overflow(void) {
  /* 2^32 x 2^32 elements: the product wraps to 0, matching an empty tensor */
  expect_bad_header("elems-wrap",
                    "{\"ok\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]},"
                    "\"big\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296],\"data_offsets\":[16,16]}}",
                    16, "big");
  /* 2^62 elements fit, 2^62 x 4 bytes wraps to 0 */
  expect_bad_header("bytes-wrap", "{\"big4\":{\"dtype\":\"F32\",\"shape\":[4294967296,1073741824],\"data_offsets\":[0,0]}}", 0,
                    "big4");
  /* eight dims of 2^8 = 2^64 elements, one byte each */
  expect_bad_header("many-dims", "{\"u8\":{\"dtype\":\"U8\",\"shape\":[256,256,256,256,256,256,256,256],\"data_offsets\":[0,0]}}",
                    0, "u8");
  expect_bad_header("negative", "{\"neg\":{\"dtype\":\"F32\",\"shape\":[-4,2],\"data_offsets\":[0,0]}}", 0, "neg");
  /* 2.5 x 2 read as 2 x 2 = 16 bytes */
  expect_bad_header("fraction", "{\"frac\":{\"dtype\":\"F32\",\"shape\":[2.5,2],\"data_offsets\":[0,16]}}", 16, "frac");
  /* offsets that are not numbers read as 0 */
  expect_bad_header("offsets-text", "{\"txt\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[\"0\",\"0\"]}}", 0, "txt");
  expect_bad_header("offsets-huge",
                    "{\"far\":{\"dtype\":\"U8\",\"shape\":[16],\"data_offsets\":[18446744073709551600,18446744073709551616]}}",
                    16, "far");
  /* a zero dim makes an empty tensor whatever the other dims: not an overflow */
  char path[400];
  snprintf(path, sizeof path, "%s/hdr-empty.safetensors", g_tmp);
  CHECK(tpd_write_st_file(path, "{\"e\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,0],\"data_offsets\":[0,0]}}", NULL,
                          0) == 0,
        "writing %s", path);
  tpd_st *st = NULL;
  CHECK_OK(tpd_st_open_file(path, &st));
  if (st) CHECK(tpd_st_count(st) == 1 && tpd_st_at(st, 0)->n_bytes == 0, "empty tensor");
  tpd_st_close(st);
}

/* Broken files: each rejected at open or at validation with a message naming the problem. */
static void expect_bad(const char *kind, const char *tensor, const char *needle) {
  char good[300], bad[300];
  snprintf(good, sizeof good, "%s/one", g_tmp);
  snprintf(bad, sizeof bad, "%s/bad-%s", g_tmp, kind);
  CHECK(tpd_make_bad(good, bad, kind, tensor) == 0, "writing the %s variant", kind);
  tpd_comm *comm = NULL;
  CHECK_OK(tpd_comm_single_create(&comm));
  tpd_engine_opts o = {TPD_ENGINE_OPTS_INIT, .model_dir = bad, .n_threads = 1};
  tpd_engine *e = NULL;
  tpd_clear_error();
  tpd_status s = tpd_engine_create(&o, comm, &e);
  CHECK(s != TPD_OK, "%s: accepted", kind);
  CHECK(strstr(tpd_last_error(), needle) != NULL, "%s: message '%s' lacks '%s'", kind, tpd_last_error(), needle);
  CHECK(strchr(tpd_last_error(), '\n') == NULL, "%s: message spans lines", kind);
  tpd_clear_error();
  tpd_engine_destroy(e);
  tpd_comm_destroy(comm);
}

static void test_bad_files(void) {
  expect_bad("truncated", NULL, "truncated");
  expect_bad("header-past-end", NULL, "header claims");
  expect_bad("offsets", "model.layers.1.mlp.up_proj.weight", "past the end");
  expect_bad("dtype", "model.layers.0.self_attn.k_proj.weight", "has dtype I16");
  expect_bad("missing", "model.layers.1.post_attention_layernorm.weight", "missing tensor 'model.layers.1.post_attention_layernorm.weight'");
  expect_bad("shape", "model.layers.0.mlp.down_proj.weight", "config.json implies [64, 172]");
  expect_bad("garbage-json", NULL, "not valid JSON");
  /* missing directory and missing file */
  tpd_comm *comm = NULL;
  CHECK_OK(tpd_comm_single_create(&comm));
  tpd_engine *e = NULL;
  tpd_engine_opts o = {TPD_ENGINE_OPTS_INIT, .model_dir = "/nonexistent/model", .n_threads = 1};
  CHECK(tpd_engine_create(&o, comm, &e) != TPD_OK && strstr(tpd_last_error(), "does not exist"), "missing dir: %s",
        tpd_last_error());
  tpd_clear_error();
  char dir[300];
  snprintf(dir, sizeof dir, "%s/empty", g_tmp);
  mkdir(dir, 0755);
  o.model_dir = dir;
  CHECK(tpd_engine_create(&o, comm, &e) != TPD_OK && strstr(tpd_last_error(), "config.json"), "missing config: %s",
        tpd_last_error());
  tpd_clear_error();
  tpd_comm_destroy(comm);
}

int main(void) {
  tu_seed("test_loader");
  snprintf(g_tmp, sizeof g_tmp, "/tmp/tpd-test-loader-%d", (int)getpid());
  mkdir(g_tmp, 0755);
  test_config();
  test_shard_plan();
  test_safetensors();
  test_single_file_wins();
  test_header_overflow();
  test_bad_files();
  char cmd[400];
  snprintf(cmd, sizeof cmd, "rm -rf %s", g_tmp);
  if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", g_tmp);
  return tu_finish("test_loader");
}
