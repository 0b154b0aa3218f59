/* The CPU emulation's device memory (tests/gpu/emu; the design:
 * emu_runtime.cpp): cudaMalloc returns exactly the bytes asked for, filled
 * with garbage, so that AddressSanitizer reports a read one past the end;
 * copies and memsets are checked against the allocations and run in stream
 * order. */
#include <stdlib.h>
#include <string.h>

#include <map>
#include <memory>
#include <vector>

#include "emu_internal.h"

using namespace emu;

static std::map<uintptr_t, size_t> g_allocs; /* address -> bytes of every live cudaMalloc */

static bool is_device(const void *p) {
  const uintptr_t a = (uintptr_t)p;
  auto it = g_allocs.upper_bound(a);
  if (it == g_allocs.begin()) return false;
  --it;
  return a >= it->first && a < it->first + it->second;
}

static void check_range(const void *p, size_t n, const char *what) {
  if (n && is_device(p) && !is_device((const char *)p + n - 1)) {
    char m[160];
    snprintf(m, sizeof m, "%s past the end of a device allocation", what);
    emu_die(m);
  }
}

/* A copy of `rows` rows of `width` bytes.  Device to device: deferred.  From
 * pageable host memory: the source is read now (as CUDA stages it), the
 * device is written in stream order.  To pageable host memory: returns once
 * the copy has run.  Host to host: at once. */
static cudaError_t copy_on(cudaStream_t hs, void *dst, size_t dpitch, const void *src, size_t spitch, size_t width,
                           size_t rows) {
  const bool dd = is_device(dst), sd = is_device(src);
  emu_stream *s = S(hs);
  if (s->cap && (!dd || !sd)) {
    s->cap->invalid = true; /* pageable host memory cannot be captured */
    return set_err(cudaErrorStreamCaptureUnsupported);
  }
  for (size_t r = 0; r < rows; r++) {
    check_range((const char *)dst + r * dpitch, width, "copy to");
    check_range((const char *)src + r * spitch, width, "copy from");
  }
  if (!width || !rows) return cudaSuccess;
  if (!dd && !sd) {
    for (size_t r = 0; r < rows; r++) memmove((char *)dst + r * dpitch, (const char *)src + r * spitch, width);
    return cudaSuccess;
  }
  if (!sd) {
    auto staged = std::make_shared<std::vector<char>>(width * rows);
    for (size_t r = 0; r < rows; r++) memcpy(staged->data() + r * width, (const char *)src + r * spitch, width);
    return submit(hs, [=]() {
      for (size_t r = 0; r < rows; r++) memcpy((char *)dst + r * dpitch, staged->data() + r * width, width);
    }, "copy host to device");
  }
  OpP o;
  const cudaError_t e = submit(hs, [=]() {
    for (size_t r = 0; r < rows; r++) memmove((char *)dst + r * dpitch, (const char *)src + r * spitch, width);
  }, dd ? "copy device to device" : "copy device to host", nullptr, &o);
  if (e == cudaSuccess && !dd) {
    drain({o});
    return take_fault();
  }
  return e;
}

extern "C" {

cudaError_t cudaMalloc(void **p, size_t n) {
  *p = NULL;
  const cudaError_t u = unsafe_call();
  if (u != cudaSuccess) return set_err(u);
  void *q = NULL;
  if (posix_memalign(&q, 256, n ? n : 1) != 0) return set_err(cudaErrorMemoryAllocation);
  memset(q, 0xA5, n); /* device memory starts as garbage, not zeros */
  g_allocs[(uintptr_t)q] = n ? n : 1;
  *p = q;
  return cudaSuccess;
}

cudaError_t cudaFree(void *p) {
  if (!p) return cudaSuccess;
  const cudaError_t u = unsafe_call();
  if (u != cudaSuccess) return set_err(u);
  auto it = g_allocs.find((uintptr_t)p);
  if (it == g_allocs.end()) emu_die("cudaFree of a pointer cudaMalloc did not return");
  drain_all(); /* cudaFree waits for the device */
  g_allocs.erase(it);
  free(p);
  return cudaSuccess;
}

cudaError_t cudaMemcpy(void *dst, const void *src, size_t n, cudaMemcpyKind k) {
  (void)k;
  const cudaError_t u = unsafe_call();
  if (u != cudaSuccess) return set_err(u);
  return copy_on(NULL, dst, n, src, n, n, 1);
}

cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t n, cudaMemcpyKind k, cudaStream_t s) {
  (void)k;
  return copy_on(s, dst, n, src, n, n, 1);
}

cudaError_t cudaMemcpy2DAsync(void *dst, size_t dpitch, const void *src, size_t spitch, size_t width, size_t height,
                              cudaMemcpyKind k, cudaStream_t s) {
  (void)k;
  if (width > dpitch || width > spitch) return set_err(cudaErrorInvalidValue);
  return copy_on(s, dst, dpitch, src, spitch, width, height);
}

cudaError_t cudaMemset(void *p, int v, size_t n) {
  const cudaError_t u = unsafe_call();
  if (u != cudaSuccess) return set_err(u);
  return cudaMemsetAsync(p, v, n, NULL);
}

cudaError_t cudaMemsetAsync(void *p, int v, size_t n, cudaStream_t s) {
  if (n && (!is_device(p) || !is_device((char *)p + n - 1))) emu_die("cudaMemset outside a device allocation");
  return submit(s, [p, v, n]() { memset(p, v, n); }, "memset");
}

cudaError_t cudaPointerGetAttributes(cudaPointerAttributes *a, const void *p) {
  memset(a, 0, sizeof *a);
  a->type = is_device(p) ? cudaMemoryTypeDevice : cudaMemoryTypeUnregistered;
  a->device = 0;
  return cudaSuccess;
}

}  // extern "C"
