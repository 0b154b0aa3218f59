/* Pareto frontier and a hand-written SVG plot (no libraries). */
#include "runtime/pareto.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------ */
/* frontier                                                             */

typedef struct {
  double x, y;
  int i;
} pt;

static int by_x_desc(const void *a, const void *b) {
  const pt *p = a, *q = b;
  if (p->x != q->x) return p->x > q->x ? -1 : 1;
  if (p->y != q->y) return p->y > q->y ? -1 : 1;
  return p->i - q->i;
}

int tpd_pareto_frontier(const double *x, const double *y, int n, int *out_idx) {
  if (n <= 0) return 0;
  pt *p = malloc(sizeof *p * (size_t)n);
  if (!p) return 0;
  int m = 0;
  for (int i = 0; i < n; i++)
    if (isfinite(x[i]) && isfinite(y[i])) p[m++] = (pt){x[i], y[i], i};
  qsort(p, (size_t)m, sizeof *p, by_x_desc);
  /* walking from the largest x down, a point survives only if its y beats
   * every point with a larger (or equal) x */
  int k = 0;
  double best = -INFINITY;
  for (int j = 0; j < m; j++)
    if (p[j].y > best) {
      best = p[j].y;
      out_idx[k++] = p[j].i;
    }
  for (int a = 0, b = k - 1; a < b; a++, b--) {
    const int t = out_idx[a];
    out_idx[a] = out_idx[b];
    out_idx[b] = t;
  }
  free(p);
  return k;
}

/* ------------------------------------------------------------------ */
/* a growing string                                                     */

typedef struct {
  char *p;
  size_t n, cap;
  int oom;
} sbuf;

static void sb_printf(sbuf *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_printf(sbuf *s, const char *fmt, ...) {
  if (s->oom) return;
  for (;;) {
    va_list ap;
    va_start(ap, fmt);
    const int k = vsnprintf(s->p + s->n, s->cap - s->n, fmt, ap);
    va_end(ap);
    if (k < 0) {
      s->oom = 1;
      return;
    }
    if ((size_t)k < s->cap - s->n) {
      s->n += (size_t)k;
      return;
    }
    size_t cap = s->cap * 2;
    while (cap - s->n <= (size_t)k) cap *= 2;
    char *g = realloc(s->p, cap);
    if (!g) {
      s->oom = 1;
      return;
    }
    s->p = g;
    s->cap = cap;
  }
}

/* text content or attribute value, XML-escaped */
static void sb_text(sbuf *s, const char *t) {
  for (; t && *t; t++) {
    switch (*t) {
      case '&': sb_printf(s, "&amp;"); break;
      case '<': sb_printf(s, "&lt;"); break;
      case '>': sb_printf(s, "&gt;"); break;
      case '"': sb_printf(s, "&quot;"); break;
      case '\'': sb_printf(s, "&apos;"); break;
      default: sb_printf(s, "%c", *t);
    }
  }
}

/* ------------------------------------------------------------------ */
/* axes                                                                 */

typedef struct {
  int log;
  double lo, hi;     /* data range after rounding out (log: powers of ten) */
  double p0, p1;     /* pixel positions of lo and hi */
} axis;

static double ax_map(const axis *a, double v) {
  const double f = a->log ? (log10(v) - log10(a->lo)) / (log10(a->hi) - log10(a->lo)) : (v - a->lo) / (a->hi - a->lo);
  return a->p0 + f * (a->p1 - a->p0);
}

static int ax_ok(const axis *a, double v) { return isfinite(v) && (!a->log || v > 0); }

/* The points="..." of a series' polyline (points off a log axis left out), closed. */
static void polyline_points(sbuf *s, const tpd_plot_series *se, const axis *ax, const axis *ay) {
  for (int j = 0; j < se->n; j++)
    if (ax_ok(ax, se->x[j]) && ax_ok(ay, se->y[j]))
      sb_printf(s, "%s%.1f,%.1f", j ? " " : "", ax_map(ax, se->x[j]), ax_map(ay, se->y[j]));
  sb_printf(s, "\"/>\n");
}

static double nice_step(double span) {
  const double raw = span / 6.0, e = pow(10.0, floor(log10(raw))), f = raw / e;
  return (f < 1.5 ? 1 : f < 3.5 ? 2 : f < 7.5 ? 5 : 10) * e;
}

static void ax_range(axis *a, double lo, double hi) {
  if (!(lo <= hi)) lo = hi = a->log ? 1 : 0;
  if (a->log) { /* round out to 1, 2 or 5 times a power of ten */
    static const double m[] = {1, 2, 5, 10};
    const double dl = pow(10.0, floor(log10(lo) + 1e-9)), dh = pow(10.0, floor(log10(hi) + 1e-9));
    a->lo = dl;
    for (int k = 2; k >= 0; k--)
      if (dl * m[k] <= lo * (1 + 1e-9)) {
        a->lo = dl * m[k];
        break;
      }
    a->hi = dh * 10;
    for (int k = 0; k < 4; k++)
      if (dh * m[k] >= hi * (1 - 1e-9)) {
        a->hi = dh * m[k];
        break;
      }
    if (a->hi <= a->lo) a->hi = a->lo * 10;
    return;
  }
  if (hi == lo) {
    const double d = fabs(lo) > 0 ? fabs(lo) * 0.5 : 1;
    lo -= d, hi += d;
  }
  const double st = nice_step(hi - lo);
  a->lo = floor(lo / st) * st;
  a->hi = ceil(hi / st) * st;
  if (lo >= 0 && a->lo > 0 && a->lo <= (hi - lo)) a->lo = 0; /* start at zero when it costs little */
}

/* "1", "20", "500", "1k", "2.5k", "1M", "0.05" */
static void tick_label(double v, char *buf, size_t cap) {
  const double a = fabs(v);
  if (a >= 1e6) snprintf(buf, cap, "%gM", v / 1e6);
  else if (a >= 1e3) snprintf(buf, cap, "%gk", v / 1e3);
  else snprintf(buf, cap, "%g", v);
}

/* Ticks: log axes at 1, 2, 5 x 10^k (labelled: all of them over up to three
 * decades, else the powers of ten); linear axes at a 1-2-5 step. */
static int ax_ticks(const axis *a, double *v, int *major, int cap) {
  int n = 0;
  if (a->log) {
    const double decades = log10(a->hi / a->lo);
    for (double d = pow(10.0, floor(log10(a->lo) + 1e-9)); d <= a->hi * 1.0001 && n < cap; d *= 10) {
      static const double m[] = {1, 2, 5};
      for (int k = 0; k < 3 && n < cap; k++) {
        const double t = d * m[k];
        if (t < a->lo * 0.9999) continue;
        if (t > a->hi * 1.0001) break;
        v[n] = t;
        major[n] = k == 0 || decades <= 3.01;
        n++;
      }
    }
    return n;
  }
  const double st = nice_step(a->hi - a->lo);
  for (double t = a->lo; t <= a->hi + st * 1e-6 && n < cap; t += st) {
    v[n] = fabs(t) < st * 1e-9 ? 0 : t;
    major[n++] = 1;
  }
  return n;
}

/* ------------------------------------------------------------------ */
/* labels that avoid each other                                          */

typedef struct {
  double x0, y0, x1, y1;
} box;

static int overlaps(const box *b, const box *placed, int n) {
  for (int i = 0; i < n; i++)
    if (b->x0 < placed[i].x1 && placed[i].x0 < b->x1 && b->y0 < placed[i].y1 && placed[i].y0 < b->y1) return 1;
  return 0;
}

/* ------------------------------------------------------------------ */

static void marker(sbuf *s, tpd_plot_marker mk, double x, double y, double r, const char *color, int hollow) {
  const char *fill = hollow ? "white" : color;
  if (mk == TPD_MARK_SQUARE)
    sb_printf(s, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"%s\" stroke=\"%s\"/>\n", x - r,
              y - r, 2 * r, 2 * r, fill, color);
  else if (mk == TPD_MARK_DIAMOND)
    sb_printf(s, "<polygon points=\"%.1f,%.1f %.1f,%.1f %.1f,%.1f %.1f,%.1f\" fill=\"%s\" stroke=\"%s\"/>\n", x,
              y - r * 1.3, x + r * 1.3, y, x, y + r * 1.3, x - r * 1.3, y, fill, color);
  else
    sb_printf(s, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"%.1f\" fill=\"%s\" stroke=\"%s\"/>\n", x, y, r, fill, color);
}

tpd_status tpd_plot_svg(const tpd_plot_opts *o, const tpd_plot_series *series, int n_series, char **out) {
  *out = NULL;
  const int W = o->width > 0 ? o->width : 900, H0 = o->height > 0 ? o->height : 600;
  int n_legend = 0;
  for (int i = 0; i < n_series; i++) n_legend += series[i].name != NULL;
  const double left = 78, right = W - 24, top = o->subtitle ? 64 : 46, bottom = H0 - 64;
  const int H = H0 + 20 * n_legend + (n_legend ? 10 : 0);

  axis ax = {o->log_x, 0, 0, left, right}, ay = {o->log_y, 0, 0, bottom, top};
  double xlo = INFINITY, xhi = -INFINITY, ylo = INFINITY, yhi = -INFINITY;
  for (int i = 0; i < n_series; i++)
    for (int j = 0; j < series[i].n; j++) {
      const double x = series[i].x[j], y = series[i].y[j];
      if (!ax_ok(&ax, x) || !ax_ok(&ay, y)) continue;
      xlo = fmin(xlo, x), xhi = fmax(xhi, x), ylo = fmin(ylo, y), yhi = fmax(yhi, y);
    }
  if (!(xlo <= xhi)) xlo = xhi = ylo = yhi = 1;
  ax_range(&ax, xlo, xhi);
  ax_range(&ay, ylo, yhi);

  sbuf s = {malloc(16384), 0, 16384, 0};
  if (!s.p) return TPD_FAIL(TPD_ERR_OOM, "out of memory");
  sb_printf(&s,
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" viewBox=\"0 0 %d %d\" "
            "font-family=\"DejaVu Sans, Helvetica, Arial, sans-serif\" font-size=\"12\">\n",
            W, H, W, H);
  sb_printf(&s, "<rect x=\"0\" y=\"0\" width=\"%d\" height=\"%d\" fill=\"white\"/>\n", W, H);
  if (o->title) {
    sb_printf(&s, "<text x=\"%.1f\" y=\"24\" text-anchor=\"middle\" font-size=\"16\" font-weight=\"bold\">",
              (left + right) / 2);
    sb_text(&s, o->title);
    sb_printf(&s, "</text>\n");
  }
  if (o->subtitle) {
    sb_printf(&s, "<text x=\"%.1f\" y=\"44\" text-anchor=\"middle\" font-size=\"12\" fill=\"#444\">",
              (left + right) / 2);
    sb_text(&s, o->subtitle);
    sb_printf(&s, "</text>\n");
  }

  /* grid, ticks, tick labels */
  double tv[128];
  int tm[128];
  char lab[32];
  sb_printf(&s, "<g id=\"x-axis\">\n");
  int nt = ax_ticks(&ax, tv, tm, 128);
  for (int i = 0; i < nt; i++) {
    const double px = ax_map(&ax, tv[i]);
    sb_printf(&s, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"%s\" stroke-width=\"1\"/>\n", px,
              top, px, bottom, tm[i] ? "#dddddd" : "#f0f0f0");
    sb_printf(&s, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"black\"/>\n", px, bottom, px,
              bottom + (tm[i] ? 6 : 3));
    if (tm[i]) {
      tick_label(tv[i], lab, sizeof lab);
      sb_printf(&s, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">%s</text>\n", px, bottom + 20, lab);
    }
  }
  sb_printf(&s, "</g>\n<g id=\"y-axis\">\n");
  nt = ax_ticks(&ay, tv, tm, 128);
  for (int i = 0; i < nt; i++) {
    const double py = ax_map(&ay, tv[i]);
    sb_printf(&s, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"%s\" stroke-width=\"1\"/>\n", left,
              py, right, py, tm[i] ? "#dddddd" : "#f0f0f0");
    sb_printf(&s, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"black\"/>\n", left - (tm[i] ? 6 : 3),
              py, left, py);
    if (tm[i]) {
      tick_label(tv[i], lab, sizeof lab);
      sb_printf(&s, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\">%s</text>\n", left - 9, py + 4, lab);
    }
  }
  sb_printf(&s, "</g>\n");
  sb_printf(&s, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"none\" stroke=\"black\"/>\n", left,
            top, right - left, bottom - top);
  if (o->x_label) {
    sb_printf(&s, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\" font-size=\"13\">", (left + right) / 2,
              bottom + 42);
    sb_text(&s, o->x_label);
    sb_printf(&s, "</text>\n");
  }
  if (o->y_label) {
    const double cy = (top + bottom) / 2;
    sb_printf(&s, "<text x=\"18\" y=\"%.1f\" text-anchor=\"middle\" font-size=\"13\" transform=\"rotate(-90 18 %.1f)\">",
              cy, cy);
    sb_text(&s, o->y_label);
    sb_printf(&s, "</text>\n");
  }

  /* series: lines first, then markers, then labels (placed to avoid each other) */
  box *placed = malloc(sizeof *placed * 1024);
  int n_placed = 0;
  if (!placed) {
    free(s.p);
    return TPD_FAIL(TPD_ERR_OOM, "out of memory");
  }
  sb_printf(&s, "<g id=\"series\">\n");
  for (int i = 0; i < n_series; i++) { /* bands first, underneath */
    const tpd_plot_series *se = &series[i];
    if (se->style != TPD_PLOT_WIDE) continue;
    sb_printf(&s, "<polyline fill=\"none\" stroke=\"%s\" stroke-opacity=\"0.25\" stroke-width=\"9\" "
                  "stroke-linejoin=\"round\" stroke-linecap=\"round\" points=\"", se->color);
    polyline_points(&s, se, &ax, &ay);
  }
  for (int i = 0; i < n_series; i++) {
    const tpd_plot_series *se = &series[i];
    if (se->style == TPD_PLOT_POINTS || se->style == TPD_PLOT_WIDE) continue;
    sb_printf(&s, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"%s\"%s points=\"", se->color,
              se->style == TPD_PLOT_LINE ? "2" : "1.6",
              se->style == TPD_PLOT_DASHED ? " stroke-dasharray=\"7 4\"" : "");
    polyline_points(&s, se, &ax, &ay);
  }
  for (int i = 0; i < n_series; i++) {
    const tpd_plot_series *se = &series[i];
    if (se->style == TPD_PLOT_LINE || se->style == TPD_PLOT_WIDE) continue;
    for (int j = 0; j < se->n; j++) {
      if (!ax_ok(&ax, se->x[j]) || !ax_ok(&ay, se->y[j])) continue;
      const double px = ax_map(&ax, se->x[j]), py = ax_map(&ay, se->y[j]);
      const int pts = se->style == TPD_PLOT_POINTS;
      marker(&s, se->marker, px, py, pts ? 4.5 : 2.8, se->color, !pts);
      if (n_placed < 1024) placed[n_placed++] = (box){px - 5, py - 5, px + 5, py + 5};
    }
  }
  for (int i = 0; i < n_series; i++) {
    const tpd_plot_series *se = &series[i];
    if (!se->labels) continue;
    for (int j = 0; j < se->n; j++) {
      if (!se->labels[j] || !ax_ok(&ax, se->x[j]) || !ax_ok(&ay, se->y[j])) continue;
      if (se->style == TPD_PLOT_DASHED && j > 0 && j < se->n - 1) continue;
      const double px = ax_map(&ax, se->x[j]), py = ax_map(&ay, se->y[j]);
      const double w = 6.3 * (double)strlen(se->labels[j]), h = 12;
      /* candidate spots: right, left, above, below, then further out */
      const double dx[] = {7, -7 - w, -w / 2, -w / 2, 7, -7 - w, 7, -7 - w};
      const double dy[] = {4, 4, -9, 17, -10, -10, 17, 17};
      int k = 0;
      box b = {0, 0, 0, 0};
      for (k = 0; k < 8; k++) {
        b = (box){px + dx[k], py + dy[k] - h + 2, px + dx[k] + w, py + dy[k] + 2};
        if (b.x0 >= left && b.x1 <= right && b.y0 >= top && b.y1 <= bottom && !overlaps(&b, placed, n_placed)) break;
      }
      if (k == 8) b = (box){px + dx[0], py + dy[0] - h + 2, px + dx[0] + w, py + dy[0] + 2};
      if (n_placed < 1024) placed[n_placed++] = b;
      sb_printf(&s, "<text x=\"%.1f\" y=\"%.1f\" font-size=\"11\" fill=\"%s\">", b.x0, b.y1 - 2,
                se->style == TPD_PLOT_POINTS ? "#222" : se->color);
      sb_text(&s, se->labels[j]);
      sb_printf(&s, "</text>\n");
    }
  }
  sb_printf(&s, "</g>\n");
  free(placed);

  /* legend below the plot */
  if (n_legend) {
    sb_printf(&s, "<g id=\"legend\">\n");
    double ly = H0 + 4;
    for (int i = 0; i < n_series; i++) {
      const tpd_plot_series *se = &series[i];
      if (!se->name) continue;
      const double lx = left;
      if (se->style == TPD_PLOT_POINTS) {
        marker(&s, se->marker, lx + 14, ly - 4, 4.5, se->color, 0);
      } else if (se->style == TPD_PLOT_WIDE) {
        sb_printf(&s, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"%s\" stroke-opacity=\"0.25\" "
                      "stroke-width=\"9\"/>\n", lx, ly - 4, lx + 28, ly - 4, se->color);
      } else {
        sb_printf(&s, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"%s\" stroke-width=\"2\"%s/>\n", lx,
                  ly - 4, lx + 28, ly - 4, se->color, se->style == TPD_PLOT_DASHED ? " stroke-dasharray=\"7 4\"" : "");
      }
      sb_printf(&s, "<text x=\"%.1f\" y=\"%.1f\">", lx + 38, ly);
      sb_text(&s, se->name);
      sb_printf(&s, "</text>\n");
      ly += 20;
    }
    sb_printf(&s, "</g>\n");
  }
  sb_printf(&s, "</svg>\n");
  if (s.oom) {
    free(s.p);
    return TPD_FAIL(TPD_ERR_OOM, "out of memory rendering the plot");
  }
  *out = s.p;
  return TPD_OK;
}
