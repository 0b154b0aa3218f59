/* AMX-BF16 kernel (bf16 activations, kernels/cpu/cpu_isa.h, on a CPU whose
 * OS grants AMX tiles): bf16 weights against activations rounded to bf16,
 * 16 x 16 output tiles, each tdpbf16ps a 16-row x 32-k by 32-k x 16-column
 * product.
 *
 * The panel layout (mm_tile.h) is already the B operand's: a bf16 chunk is
 * 16 rows x one k pair, 64 bytes, which is one row of a B tile in the pair
 * ("VNNI") form, so 16 consecutive chunks (1 KB, stride 64) are one B tile
 * and the weights are loaded straight from the panel stream.  The A operand
 * is x rounded to bf16 (p->xb), its rows padded to a multiple of 16 and its
 * k to a multiple of 32 with zeros (tpd_amx_rows / tpd_amx_ld), so
 * every tile has the one shape, 16 rows x 64 bytes, and one configuration
 * serves the whole run.  The weights' last k block, where Kp is not a
 * multiple of 32, is copied into a zero-padded tile first.
 *
 * Tiles: tmm0-3 the outputs (C00 C01 C10 C11: 32 rows x 32 columns), tmm4-5
 * two row tiles of x (A0 A1), tmm6-7 two panels' weights (B0 B1): each B
 * tile loaded from memory serves 32 rows of X, and a panel pair is read
 * from memory once per step; later row blocks (M > 32) find it in L2.  Up to 16 rows take four panels at a time instead (tmm0-3
 * one per panel), four weight streams as the f32 kernel keeps for small
 * batches.
 *
 * Each output is one fp32 sum over ascending k blocks, then + bias; a row's
 * arithmetic does not depend on the other rows of the block, so the result
 * does not depend on the batch, its composition or the thread count, as in
 * the other kernels.  Products of two bf16 values are exact in fp32; the
 * sums round to nearest even with denormals flushed (the instruction's
 * definition), like vdpbf16ps, though the two sum k in a different order. */
#include <immintrin.h>
#include <string.h>

#include "kernels/cpu/mm_tile.h"

typedef struct {
  uint8_t palette, start_row;
  uint8_t reserved[14];
  uint16_t colsb[16];
  uint8_t rows[16];
} tile_config;

/* Tile numbers are literals: the intrinsics paste them into the instruction. */

/* One tile load per 16 consecutive chunks: stride one chunk (64 bytes). */
#define CHUNK ((size_t)2 * TPD_PANEL * sizeof(uint16_t))

/* The weights' last, partial k block of one panel into a zero-padded tile. */
static void tail_tile(const char *panel, int kb, int pairs, unsigned char *dst) {
  memset(dst, 0, 16 * CHUNK);
  memcpy(dst, panel + (size_t)kb * 16 * CHUNK, (size_t)pairs * CHUNK);
}

/* Unset TPD_CPU_PREFETCH (TPD_CPU_PREFETCH_AUTO): 1024 bytes ahead of each stream.  The
 * f32 and vdpbf16ps kernels' shared span (tpd_mm_pf) measured no faster
 * here (docs/performance.md, "CPU decode at the floor"). */
TPD_INLINE int amx_pf(const tpd_mm *p) { return p->pf == TPD_CPU_PREFETCH_AUTO ? 1024 : p->pf; }

/* Prefetch of the next weight bytes of one panel (the hardware prefetcher
 * follows each stream; this keeps more lines in flight). */
TPD_INLINE void prefetch_tile(const char *b, int pf) {
  for (int l = 0; l < 16; l++) _mm_prefetch(b + pf + (size_t)l * CHUNK, _MM_HINT_T0);
}

/* Stores C tile c (16 x 16 fp32) into y rows [m, m + rows), outputs
 * [col, col + 16) below N, plus the bias. */
static void store_tile(const tpd_mm *p, float *buf, int m, int rows, int col) {
  if (rows <= 0 || col >= p->N) return;
  const int cols = p->N - col < 16 ? p->N - col : 16;
  const __mmask16 k = (__mmask16)((1u << cols) - 1);
  const __m512 b = p->bias ? _mm512_maskz_loadu_ps(k, p->bias + col) : _mm512_setzero_ps();
  for (int r = 0; r < rows; r++) {
    __m512 v = _mm512_loadu_ps(buf + 16 * r);
    if (p->bias) v = _mm512_add_ps(v, b);
    _mm512_mask_storeu_ps(p->y + (size_t)(m + r) * p->ldy + col, k, v);
  }
}

/* One k block of the two-by-two block: C00 += A0 B0, C01 += A0 B1 (two
 * panels), C10 += A1 B0, C11 += A1 B1 (a second row tile). */
TPD_INLINE void mac22(const char *a0, const char *a1, size_t ldxb, const char *b0, const char *b1, int two,
                      int second) {
  _tile_loadd(4, a0, ldxb);
  _tile_loadd(6, b0, CHUNK);
  _tile_dpbf16ps(0, 4, 6);
  if (two) {
    _tile_loadd(7, b1, CHUNK);
    _tile_dpbf16ps(1, 4, 7);
  }
  if (second) {
    _tile_loadd(5, a1, ldxb);
    _tile_dpbf16ps(2, 5, 6);
    if (two) _tile_dpbf16ps(3, 5, 7);
  }
}

/* Up to 16 rows against four panels: C tiles tmm0-3 one per panel, x in
 * tmm4, the panels' weights through tmm6 and tmm7 in turn.  Each output's
 * sum is the same sequence of tdpbf16ps as in the two-by-two block below. */
static void four_panels(const tpd_mm *p, int m, int m1, int n, int full, int tail_pairs, size_t ps,
                        unsigned char *tail, float *buf) {
  const char *w = tpd_panel_ptr(p, n), *x = (const char *)p->xb + (size_t)m * p->ldxb * sizeof(uint16_t);
  const size_t ldxb = (size_t)p->ldxb * sizeof(uint16_t);
  const int pf = amx_pf(p);
  _tile_zero(0);
  _tile_zero(1);
  _tile_zero(2);
  _tile_zero(3);
  for (int kb = 0; kb < full; kb++) {
    const char *b = w + (size_t)kb * 16 * CHUNK;
    if (pf > 0)
      for (int r = 0; r < 4; r++) prefetch_tile(b + (size_t)r * ps, pf);
    _tile_loadd(4, x + (size_t)kb * 64, ldxb);
    _tile_loadd(6, b, CHUNK);
    _tile_dpbf16ps(0, 4, 6);
    _tile_loadd(7, b + ps, CHUNK);
    _tile_dpbf16ps(1, 4, 7);
    _tile_loadd(6, b + 2 * ps, CHUNK);
    _tile_dpbf16ps(2, 4, 6);
    _tile_loadd(7, b + 3 * ps, CHUNK);
    _tile_dpbf16ps(3, 4, 7);
  }
  if (tail_pairs) {
    _tile_loadd(4, x + (size_t)full * 64, ldxb);
    tail_tile(w, full, tail_pairs, tail);
    _tile_loadd(6, tail, CHUNK);
    _tile_dpbf16ps(0, 4, 6);
    tail_tile(w + ps, full, tail_pairs, tail);
    _tile_loadd(7, tail, CHUNK);
    _tile_dpbf16ps(1, 4, 7);
    tail_tile(w + 2 * ps, full, tail_pairs, tail);
    _tile_loadd(6, tail, CHUNK);
    _tile_dpbf16ps(2, 4, 6);
    tail_tile(w + 3 * ps, full, tail_pairs, tail);
    _tile_loadd(7, tail, CHUNK);
    _tile_dpbf16ps(3, 4, 7);
  }
  const int rows = m1 - m;
  _tile_stored(0, buf, 64);
  store_tile(p, buf, m, rows, n);
  _tile_stored(1, buf, 64);
  store_tile(p, buf, m, rows, n + TPD_PANEL);
  _tile_stored(2, buf, 64);
  store_tile(p, buf, m, rows, n + 2 * TPD_PANEL);
  _tile_stored(3, buf, 64);
  store_tile(p, buf, m, rows, n + 3 * TPD_PANEL);
}

void tpd_mm_amx(const tpd_mm *p, int m0, int m1, int n0, int n1) {
  tile_config cfg;
  memset(&cfg, 0, sizeof cfg);
  cfg.palette = 1;
  for (int t = 0; t < 8; t++) cfg.rows[t] = 16, cfg.colsb[t] = 64;
  _tile_loadconfig(&cfg);
  const int full = p->Kp / 32, tail_pairs = (p->Kp % 32) / 2;
  const size_t ps = (size_t)(p->Kp / 2) * CHUNK, ldxb = (size_t)p->ldxb * sizeof(uint16_t);
  const int pf = amx_pf(p);
  _Alignas(64) unsigned char tail0[16 * CHUNK], tail1[16 * CHUNK];
  _Alignas(64) float buf[16 * 16];
  const int one_row_tile = m1 - m0 <= 16;
  for (int n = n0; n < n1; n += 2 * TPD_PANEL) {
    if (one_row_tile && n + 4 * TPD_PANEL <= n1) { /* up to 16 rows: four panels, four weight streams */
      four_panels(p, m0, m1, n, full, tail_pairs, ps, tail0, buf);
      n += 2 * TPD_PANEL;
      continue;
    }
    const int two = n + TPD_PANEL < n1; /* a second panel in this share */
    const char *w0 = tpd_panel_ptr(p, n), *w1 = two ? w0 + ps : w0;
    if (tail_pairs) {
      tail_tile(w0, full, tail_pairs, tail0);
      if (two) tail_tile(w1, full, tail_pairs, tail1);
    }
    for (int m = m0; m < m1; m += 32) {
      const int second = m + 16 < m1; /* a second row tile */
      const char *x0 = (const char *)p->xb + (size_t)m * ldxb, *x1 = x0 + 16 * ldxb;
      const int first_rows = m == m0 && pf > 0; /* the pass that streams W from memory */
      _tile_zero(0);
      _tile_zero(1);
      _tile_zero(2);
      _tile_zero(3);
      for (int kb = 0; kb < full; kb++) {
        const char *b0 = w0 + (size_t)kb * 16 * CHUNK, *b1 = w1 + (size_t)kb * 16 * CHUNK;
        if (first_rows) {
          prefetch_tile(b0, pf);
          if (two) prefetch_tile(b1, pf);
        }
        mac22(x0 + (size_t)kb * 64, x1 + (size_t)kb * 64, ldxb, b0, b1, two, second);
      }
      if (tail_pairs) /* x is zero beyond K in xb; the weights beyond Kp in the tail tiles */
        mac22(x0 + (size_t)full * 64, x1 + (size_t)full * 64, ldxb, (const char *)tail0, (const char *)tail1, two, second);
      const int rows0 = m1 - m < 16 ? m1 - m : 16, rows1 = m1 - m - 16 < 16 ? m1 - m - 16 : 16;
      _tile_stored(0, buf, 64);
      store_tile(p, buf, m, rows0, n);
      if (two) {
        _tile_stored(1, buf, 64);
        store_tile(p, buf, m, rows0, n + TPD_PANEL);
      }
      if (second) {
        _tile_stored(2, buf, 64);
        store_tile(p, buf, m + 16, rows1, n);
        if (two) {
          _tile_stored(3, buf, 64);
          store_tile(p, buf, m + 16, rows1, n + TPD_PANEL);
        }
      }
    }
  }
  _tile_release();
}
