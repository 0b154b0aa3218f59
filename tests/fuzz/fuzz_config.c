/* Fuzz target: config.json (runtime/model/config.c, tpd_config_parse).
 * On success the fields the header promises are in range, and the rotary
 * frequencies and the parameter count are finite and positive: a config
 * that parses must never give NaN or infinite numbers downstream. */
#include <math.h>

#include "runtime/model/config.h"
#include "tests/fuzz/fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  fz_quiet();
  char *text = fz_cstr(data, size);
  tpd_model_config c;
  tpd_status s = tpd_config_parse(text, "config.json", &c);
  free(text);
  if (s != TPD_OK) {
    fz_check_error(s);
    return 0;
  }
  FZ_CHECK(c.dim > 0 && c.n_layers > 0 && c.n_heads > 0 && c.ffn_dim > 0 && c.vocab > 0 && c.max_pos > 0,
           "a size is not positive");
  FZ_CHECK(c.n_kv_heads > 0 && c.n_heads % c.n_kv_heads == 0, "kv heads %d, heads %d", c.n_kv_heads, c.n_heads);
  FZ_CHECK(c.head_dim > 0 && c.head_dim % 2 == 0, "head_dim %d", c.head_dim);
  FZ_CHECK(c.norm_eps > 0 && isfinite(c.norm_eps), "rms_norm_eps %g", c.norm_eps);
  FZ_CHECK(c.n_eos >= 0 && c.n_eos <= TPD_MAX_EOS, "n_eos %d", c.n_eos);
  FZ_CHECK(c.sliding_window >= 0, "sliding_window %d", c.sliding_window);
  FZ_CHECK(memchr(c.model_type, 0, sizeof c.model_type) != NULL, "model_type not terminated");
  const double np = tpd_config_n_params(&c);
  FZ_CHECK(np > 0 && isfinite(np), "n_params %g", np);
  /* the frequencies of a head_dim a model could have (the parser accepts up to
   * 2e9, which the memory plan refuses later; allocating for it here would
   * only be the target's own out-of-memory: regress/config/oom-huge-head-dim) */
  if (c.head_dim > (1 << 16))
    return 0;
  double *f = malloc(sizeof *f * (size_t)(c.head_dim / 2));
  FZ_CHECK(f != NULL, "out of memory (head_dim %d)", c.head_dim);
  tpd_rope_inv_freq(&c, f);
  for (int i = 0; i < c.head_dim / 2; i++)
    FZ_CHECK(isfinite(f[i]) && f[i] > 0, "inv_freq[%d] = %g (rope_theta %g, factor %g)", i, f[i], c.rope_theta,
             c.rope_factor);
  free(f);
  return 0;
}
