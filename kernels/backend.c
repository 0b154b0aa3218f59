/* What every backend shares: the resolution of the options they all take
 * (activations, KV cache) and the destroy through the ops table.  The
 * backends use this file; the factory that knows them all stands above them
 * (kernels/backend_factory.c), so no backend depends on it. */
#include "kernels/backend.h"

#include <string.h>

tpd_status tpd_backend_activations(const char *backend, const tpd_backend_opts *opts, tpd_dtype *out) {
  const char *a = opts ? opts->activations : NULL;
  const int cuda = !strcmp(backend, "cuda");
  if (!a || !strcmp(a, "auto")) {
    *out = cuda ? TPD_BF16 : TPD_F32;
    return TPD_OK;
  }
  if (!strcmp(a, "f32")) {
    *out = TPD_F32;
    return TPD_OK;
  }
  if (!strcmp(a, "bf16")) { /* cpu: the matmuls' inputs (its create checks the level) */
    *out = TPD_BF16;
    return TPD_OK;
  }
  return TPD_FAIL(TPD_ERR_ARG, "unknown activations '%s' (expected auto, f32 or bf16)", a);
}

tpd_status tpd_backend_kv_cache(const char *backend, const tpd_backend_opts *opts, tpd_dtype act, tpd_dtype *out) {
  const char *k = opts ? opts->kv_cache : NULL;
  const int cuda = !strcmp(backend, "cuda");
  tpd_dtype want;
  if (!k || !strcmp(k, "auto")) want = cuda ? act : TPD_F32;
  else if (!strcmp(k, "f32")) want = TPD_F32;
  else if (!strcmp(k, "bf16")) want = TPD_BF16;
  else return TPD_FAIL(TPD_ERR_ARG, "unknown kv cache dtype '%s' (expected auto, f32 or bf16)", k);
  if (cuda && want != act) /* the cuda kernels keep the KV cache in the activation dtype */
    return TPD_FAIL(TPD_ERR_UNSUPPORTED,
                    "kv cache '%s' is not implemented by the %s backend with %s activations (its KV cache is in the "
                    "activation dtype; use auto or set the activations)",
                    k, backend, act == TPD_BF16 ? "bf16" : "f32");
  *out = want;
  return TPD_OK;
}

void tpd_backend_destroy(tpd_backend *be) {
  if (be) be->ops->destroy(be);
}
