#include "runtime/base/dtype.h"

void tpd_convert(void *dst, tpd_dtype dst_t, const void *src, tpd_dtype src_t, size_t n_elems) {
  if (dst_t == src_t) {
    memcpy(dst, src, n_elems * tpd_dtype_size(src_t));
    return;
  }
  for (size_t i = 0; i < n_elems; i++) tpd_store_f32(dst, dst_t, i, tpd_load_f32(src, src_t, i));
}
