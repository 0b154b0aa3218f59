#include "kernels/backend.h"

#include <string.h>

int tpd_backend_available(const char *name) {
  if (!strcmp(name, "cpu")) return 1;
#ifdef TPD_HAVE_CUDA
  if (!strcmp(name, "cuda")) return 1;
#endif
  return 0;
}

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
  if (!strcmp(a, "bf16")) {
    if (!cuda) /* the cpu kernels keep activations in f32 (bf16 weights are widened as they are read) */
      return TPD_FAIL(TPD_ERR_UNSUPPORTED,
                      "activations 'bf16' are not implemented by the %s backend (it keeps activations in f32; use "
                      "f32 or auto)",
                      backend);
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

tpd_status tpd_backend_create(const char *name, const tpd_backend_opts *opts, tpd_backend **out) {
  *out = NULL;
  if (!strcmp(name, "cpu")) {
    tpd_dtype act;
    TPD_TRY(tpd_backend_activations("cpu", opts, &act));
    return tpd_backend_cpu_create(opts, out);
  }
  if (!strcmp(name, "cuda")) {
#ifdef TPD_HAVE_CUDA
    return tpd_backend_cuda_create(opts, out);
#else
    return TPD_FAIL(TPD_ERR_UNSUPPORTED, "backend 'cuda' is not in this build (configure with CUDA to enable it)");
#endif
  }
  return TPD_FAIL(TPD_ERR_ARG, "unknown backend '%s' (available: cpu%s)", name,
                  tpd_backend_available("cuda") ? ", cuda" : "");
}

void tpd_backend_destroy(tpd_backend *be) {
  if (be) be->ops->destroy(be);
}
