/* The factory: tpd_backend_create picks a backend by name.  It is the one
 * file that knows every backend; the backends themselves see only
 * kernels/backend.h and kernels/backend.c. */
#include <string.h>

#include "kernels/backend.h"

int tpd_backend_available(const char *name) {
  if (!strcmp(name, "cpu")) return 1;
#ifdef TPD_HAVE_CUDA
  if (!strcmp(name, "cuda")) return 1;
#endif
  return 0;
}

tpd_status tpd_backend_create(const char *name, const tpd_backend_opts *opts, tpd_backend **out) {
  *out = NULL;
  if (!strcmp(name, "cpu")) return tpd_backend_cpu_create(opts, out);
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

tpd_status tpd_backend_auto_activations(const char *name, tpd_dtype *out) {
  if (!strcmp(name, "cpu")) return tpd_backend_cpu_auto_activations(out);
  if (!strcmp(name, "cuda")) {
    *out = TPD_BF16;
    return TPD_OK;
  }
  return TPD_FAIL(TPD_ERR_ARG, "unknown backend '%s'", name);
}
