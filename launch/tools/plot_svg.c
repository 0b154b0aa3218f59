/* A hand-written SVG plot (no libraries). */
#include "launch/tools/plot_svg.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
/* text boxes and labels that avoid each other                           */

typedef struct {
  double x0, y0, x1, y1;
} box;

static size_t n_chars(const char *t) { /* UTF-8 code points */
  size_t n = 0;
  for (; t && *t; t++) n += ((unsigned char)*t & 0xC0) != 0x80;
  return n;
}

/* anchor 0 start, 1 middle, 2 end; y is the baseline (TPD_PLOT_CHAR_W metrics) */
static box text_box(double x, double y, size_t chars, double fs, int anchor) {
  const double w = TPD_PLOT_CHAR_W * fs * (double)chars;
  const double x0 = anchor == 1 ? x - w / 2 : anchor == 2 ? x - w : x;
  return (box){x0, y - 0.8 * fs, x0 + w, y + 0.2 * fs};
}

static int overlaps(const box *b, const box *placed, int n) {
  for (int i = 0; i < n; i++)
    if (b->x0 < placed[i].x1 && placed[i].x0 < b->x1 && b->y0 < placed[i].y1 && placed[i].y0 < b->y1) return 1;
  return 0;
}

/* Greedy word wrap: the start and length of each line of t (at most
 * max_chars characters, broken at spaces, words longer than a line cut).
 * Returns the number of lines (at most cap; the rest is dropped). */
static int wrap(const char *t, size_t max_chars, const char **start, size_t *len, int cap) {
  int n = 0;
  if (max_chars < 8) max_chars = 8;
  while (t && *t && n < cap) {
    while (*t == ' ') t++;
    if (!*t) break;
    size_t cut = 0, last_space = 0, chars = 0, i = 0;
    for (; t[i] && t[i] != '\n'; i++) {
      if (((unsigned char)t[i] & 0xC0) != 0x80) {
        if (chars == max_chars) break;
        chars++;
      }
      if (t[i] == ' ') last_space = i;
    }
    if (!t[i] || t[i] == '\n') cut = i;
    else cut = last_space ? last_space : i;
    size_t l = cut;
    while (l && t[l - 1] == ' ') l--;
    start[n] = t, len[n] = l;
    n++;
    t += cut;
    if (*t == '\n') t++;
  }
  return n;
}

#define MAX_LINES 64

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

/* One <text> per wrapped line, baselines dy apart from y; returns the lines drawn. */
static int text_lines(sbuf *s, const char *t, double x, double y, double dy, size_t max_chars, const char *attrs) {
  const char *st[MAX_LINES];
  size_t ln[MAX_LINES];
  const int n = wrap(t, max_chars, st, ln, MAX_LINES);
  for (int i = 0; i < n; i++) {
    sb_printf(s, "<text x=\"%.1f\" y=\"%.1f\"%s>", x, y + dy * i, attrs);
    char buf[1024];
    const size_t l = ln[i] < sizeof buf - 1 ? ln[i] : sizeof buf - 1;
    memcpy(buf, st[i], l);
    buf[l] = 0;
    sb_text(s, buf);
    sb_printf(s, "</text>\n");
  }
  return n;
}

static int count_lines(const char *t, size_t max_chars) {
  const char *st[MAX_LINES];
  size_t ln[MAX_LINES];
  return wrap(t, max_chars, st, ln, MAX_LINES);
}

/* the legend entry a series is drawn under: itself when named, else the
 * nearest named series before it; -1 when none */
static int legend_owner(const tpd_plot_series *series, int i) {
  for (; i >= 0; i--)
    if (series[i].name) return i;
  return -1;
}

static void legend_sample(sbuf *s, const tpd_plot_series *se, double x, double y) {
  if (se->style == TPD_PLOT_POINTS) {
    marker(s, se->marker, x + 7, y, 4.5, se->color, 0);
  } else if (se->style == TPD_PLOT_WIDE) {
    sb_printf(s, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"%s\" stroke-opacity=\"0.25\" "
                 "stroke-width=\"9\"/>\n", x, y, x + 14, y, se->color);
  } else {
    sb_printf(s, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"%s\" stroke-width=\"2\"%s/>\n", x, y,
              x + 14, y, se->color, se->style == TPD_PLOT_DASHED ? " stroke-dasharray=\"4 2\"" : "");
  }
}

tpd_status tpd_plot_svg(const tpd_plot_opts *o, const tpd_plot_series *series, int n_series, char **out) {
  *out = NULL;
  const int W = o->width > 0 ? o->width : 900, H0 = o->height > 0 ? o->height : 600;
  const double left = 78, right = W - 24;
  const double cw12 = TPD_PLOT_CHAR_W * 12, cw11 = TPD_PLOT_CHAR_W * 11;
  const size_t title_chars = (size_t)((W - 20) / (TPD_PLOT_CHAR_W * 16)), sub_chars = (size_t)((W - 20) / cw12);
  const int n_title = o->title ? count_lines(o->title, title_chars) : 0;
  const int n_sub = o->subtitle ? count_lines(o->subtitle, sub_chars) : 0;
  const double y_sub = 44 + 18.0 * (n_title > 1 ? n_title - 1 : 0);
  /* one title line and one subtitle line: the plot starts at 64 (46 without a subtitle) */
  const double extra = 18.0 * (n_title > 1 ? n_title - 1 : 0) + 16.0 * (n_sub > 1 ? n_sub - 1 : 0);
  const double top = (n_sub ? 64 : 46) + extra, bottom = H0 - 64 + extra;

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

  /* the body first (the document's height depends on how many labels fit) */
  sbuf s = {malloc(16384), 0, 16384, 0};
  int n_boxes = 0;
  for (int i = 0; i < n_series; i++) n_boxes += 2 * series[i].n;
  box *placed = malloc(sizeof *placed * (size_t)(n_boxes + 1));
  const char **dropped = malloc(sizeof *dropped * (size_t)(n_boxes + 1));
  if (!s.p || !placed || !dropped) {
    free(s.p);
    free(placed);
    free(dropped);
    return TPD_FAIL(TPD_ERR_OOM, "out of memory");
  }
  int n_placed = 0, n_dropped = 0;
  if (o->title || o->subtitle) {
    sb_printf(&s, "<g id=\"title\">\n");
    if (o->title)
      text_lines(&s, o->title, W / 2.0, 24, 18, title_chars, " text-anchor=\"middle\" font-size=\"16\" font-weight=\"bold\"");
    if (o->subtitle)
      text_lines(&s, o->subtitle, W / 2.0, y_sub, 16, sub_chars, " text-anchor=\"middle\" font-size=\"12\" fill=\"#444\"");
    sb_printf(&s, "</g>\n");
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

  /* series: bands, lines, markers, then labels (placed to avoid each other) */
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
      placed[n_placed++] = (box){px - 6, py - 6, px + 6, py + 6};
    }
  }
  const double lfs = 11;
  for (int i = 0; i < n_series; i++) {
    const tpd_plot_series *se = &series[i];
    if (!se->labels) continue;
    for (int j = 0; j < se->n; j++) {
      if (!se->labels[j] || !ax_ok(&ax, se->x[j]) || !ax_ok(&ay, se->y[j])) continue;
      if (se->style == TPD_PLOT_DASHED && j > 0 && j < se->n - 1) continue;
      const double px = ax_map(&ax, se->x[j]), py = ax_map(&ay, se->y[j]);
      const size_t nc = n_chars(se->labels[j]);
      const double w = TPD_PLOT_CHAR_W * lfs * (double)nc;
      /* candidate spots in rings around the point: right, left, above, below, then the diagonals */
      int found = 0;
      box b = {0, 0, 0, 0};
      for (int ring = 1; ring <= 4 && !found; ring++) {
        const double d = 8.0 * ring;
        const double cx[8] = {px + d, px - d - w, px - w / 2, px - w / 2, px + d * 0.7, px - d * 0.7 - w,
                              px + d * 0.7, px - d * 0.7 - w};
        const double cy[8] = {py + 0.3 * lfs, py + 0.3 * lfs, py - d - 0.2 * lfs, py + d + 0.8 * lfs,
                              py - d * 0.7 - 0.2 * lfs, py - d * 0.7 - 0.2 * lfs, py + d * 0.7 + 0.8 * lfs,
                              py + d * 0.7 + 0.8 * lfs};
        for (int k = 0; k < 8 && !found; k++) {
          b = text_box(cx[k], cy[k], nc, lfs, 0);
          const box pad = {b.x0 - 1, b.y0 - 1, b.x1 + 1, b.y1 + 1};
          found = b.x0 >= left + 2 && b.x1 <= right - 2 && b.y0 >= top + 2 && b.y1 <= bottom - 2 &&
                  !overlaps(&pad, placed, n_placed);
        }
      }
      if (!found) {
        dropped[n_dropped++] = se->labels[j];
        continue;
      }
      placed[n_placed++] = b;
      sb_printf(&s, "<text x=\"%.1f\" y=\"%.1f\" font-size=\"11\" fill=\"%s\">", b.x0, b.y1 - 0.2 * lfs,
                se->style == TPD_PLOT_POINTS ? "#222" : se->color);
      sb_text(&s, se->labels[j]);
      sb_printf(&s, "</text>\n");
    }
  }
  sb_printf(&s, "</g>\n");

  /* legend below the plot: one entry per named series; its sample shows the
   * colour of every series drawn under it */
  const double lx = left;
  const double y_below = H0 + extra + 8;
  double ly = y_below;
  int n_legend = 0;
  for (int i = 0; i < n_series; i++) n_legend += series[i].name != NULL;
  if (n_legend || n_dropped) {
    sb_printf(&s, "<g id=\"legend\">\n");
    for (int i = 0; i < n_series; i++) {
      const tpd_plot_series *se = &series[i];
      if (!se->name) continue;
      int k = 0;
      for (int j = i; j < n_series && legend_owner(series, j) == i; j++, k++)
        legend_sample(&s, &series[j], lx + 16.0 * k, ly - 4);
      const double tx = lx + 16.0 * k + 8;
      const int nl = text_lines(&s, se->name, tx, ly, 15, (size_t)((W - 10 - tx) / cw12), "");
      ly += 20 + 15.0 * (nl > 1 ? nl - 1 : 0);
    }
    if (n_dropped) {
      size_t need = 40;
      for (int d = 0; d < n_dropped; d++) need += strlen(dropped[d]) + 2;
      char *t = malloc(need);
      if (!t) s.oom = 1;
      else {
        size_t at = (size_t)snprintf(t, need, "not labelled (no room): ");
        for (int d = 0; d < n_dropped; d++) at += (size_t)snprintf(t + at, need - at, "%s%s", d ? ", " : "", dropped[d]);
        const int nl = text_lines(&s, t, lx, ly, 15, (size_t)((W - 10 - lx) / cw12), " fill=\"#444\"");
        ly += 20 + 15.0 * (nl > 1 ? nl - 1 : 0);
        free(t);
      }
    }
    sb_printf(&s, "</g>\n");
  }
  if (o->caption && *o->caption) {
    sb_printf(&s, "<g id=\"caption\">\n");
    const int nl = text_lines(&s, o->caption, 10, ly + 6, 15, (size_t)((W - 20) / cw11), " font-size=\"11\" fill=\"#333\"");
    ly += 6 + 15.0 * nl;
    sb_printf(&s, "</g>\n");
  }
  sb_printf(&s, "</svg>\n");
  free(placed);
  free(dropped);
  const int H = (int)ceil(ly > y_below ? ly + 4 : H0 + extra);

  sbuf doc = {malloc(s.n + 1024), 0, s.n + 1024, s.oom};
  if (doc.p && !s.oom) {
    sb_printf(&doc,
              "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
              "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" viewBox=\"0 0 %d %d\" "
              "font-family=\"DejaVu Sans, Helvetica, Arial, sans-serif\" font-size=\"12\">\n",
              W, H, W, H);
    sb_printf(&doc, "<rect x=\"0\" y=\"0\" width=\"%d\" height=\"%d\" fill=\"white\"/>\n", W, H);
    sb_printf(&doc, "%s", s.p);
  }
  free(s.p);
  if (!doc.p || doc.oom) {
    free(doc.p);
    return TPD_FAIL(TPD_ERR_OOM, "out of memory rendering the plot");
  }
  *out = doc.p;
  return TPD_OK;
}
