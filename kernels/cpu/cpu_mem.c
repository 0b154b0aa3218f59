/* The CPU backend's memory: aligned (huge-page) allocation and the matmul
 * scratch workspace.  Below the ops (matmul.c) and the backend table
 * (backend_cpu.c), which both use it. */
#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>

#include "kernels/cpu/cpu_backend.h"

/* From HUGE_MIN bytes a block is whole 2 MB transparent huge pages: a 1-2 MB
 * weight (the 100M model's qkv and o projections) in 4 KB pages made whole
 * decode steps 2-4 % slower (docs/performance.md, "CPU decode at the
 * floor"); rounding it up costs under 1 MB each. */
enum { HUGE_ALIGN = 2 << 20, HUGE_MIN = 1 << 20 };

static size_t align_of(size_t n_bytes) { return n_bytes >= (size_t)HUGE_MIN ? (size_t)HUGE_ALIGN : 64; }

size_t tpd_cpu_alloc_bytes(size_t n_bytes) {
  const size_t align = align_of(n_bytes);
  if (n_bytes > SIZE_MAX - align) return 0;
  return n_bytes ? (n_bytes + align - 1) / align * align : align;
}

void *tpd_cpu_alloc(size_t n_bytes) {
  void *p = NULL;
  const size_t align = align_of(n_bytes), rounded = tpd_cpu_alloc_bytes(n_bytes);
  if (rounded == 0 || posix_memalign(&p, align, rounded) != 0) return NULL;
#ifdef MADV_HUGEPAGE
  if (align == (size_t)HUGE_ALIGN) {
    madvise(p, rounded, MADV_HUGEPAGE);
    /* a block the allocator hands back after an earlier free is already
     * mapped in 4 KB pages, which MADV_HUGEPAGE leaves as they are: drop them
     * (the block is ours, its contents undefined), so that first touch maps
     * 2 MB pages */
    madvise(p, rounded, MADV_DONTNEED);
  }
#endif
  return p;
}

void tpd_cpu_free(void *p) { free(p); }

tpd_status tpd_cpu_scratch(tpd_cpu *cpu, size_t n_bytes) {
  if (n_bytes <= cpu->scratch_bytes) return TPD_OK;
  if (cpu->planned)
    return TPD_FAIL(TPD_ERR_INTERNAL,
                    "cpu: the matmul scratch workspace needs %zu bytes but the memory plan gave it %zu (a planning "
                    "bug)",
                    n_bytes, cpu->scratch_bytes);
  tpd_cpu_free(cpu->scratch);
  cpu->scratch = tpd_cpu_alloc(n_bytes);
  cpu->scratch_bytes = cpu->scratch ? n_bytes : 0;
  if (!cpu->scratch) return TPD_FAIL(TPD_ERR_OOM, "out of memory for matmul scratch (%zu bytes)", n_bytes);
  return TPD_OK;
}

