/* The runtime starts on a machine without a GPU and says so plainly:
 * without a device, creating the cuda backend fails with TPD_ERR_DEVICE and
 * a message naming the missing GPU; with one, it succeeds and reports the
 * cuda ops table.  Runs (never skips) everywhere the CUDA backend is built. */
#define TU_WITH_CUDA /* the device helpers of tests/testutil.h */
#include "tests/testutil.h"

int main(void) {
  char why[256];
  const int have = tu_have_gpu(why, sizeof why);
  tpd_backend_opts o = {.n_threads = 0, .device = -1, .local_rank = 0};
  tpd_backend *be = NULL;
  const tpd_status st = tpd_backend_create("cuda", &o, &be);
  if (!have) {
    printf("no CUDA device (%s); backend create says: %s (%s)\n", why, tpd_last_error(), tpd_status_name(st));
    tu_expect(st == TPD_ERR_DEVICE && be == NULL && strstr(tpd_last_error(), "needs a CUDA GPU") != NULL,
              "without a GPU the cuda backend refuses with a plain message");
  } else {
    tu_expect(st == TPD_OK && be && !strcmp(be->ops->name, "cuda"), "with a GPU the cuda backend starts");
    tpd_backend_destroy(be);
  }
  tu_expect(tpd_backend_available("cuda") == 1, "this build lists the cuda backend");
  return tu_finish("test_gpu_nodevice");
}
