/* Checks of the SVG plot the bench writes (launch/tools/plot_svg.c), for the tests:
 *   svg_text_check    no two <text> boxes overlap and every box lies inside
 *                     the document, with the metrics plot_svg.h states (a line
 *                     of n characters at font size fs: 0.6 fs n wide, from
 *                     0.8 fs above the baseline to 0.2 fs below)
 *   svg_legend_check  the colours of the legend's samples are exactly the
 *                     colours of the drawn series (text colours aside)
 *   svg_group_text    the text of one <g id="..."> group, entities decoded
 * Each returns 0 when the document passes, else writes why. */
#ifndef TPD_TEST_SVG_CHECK_H
#define TPD_TEST_SVG_CHECK_H

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* value of attribute `name` inside the tag starting at `tag` (up to its '>'), or 0 */
static int svg_attr(const char *tag, const char *name, char *val, size_t cap) {
  const char *end = strchr(tag, '>');
  const size_t nl = strlen(name);
  for (const char *p = tag + 1; end && p < end; p++) {
    if (!isspace((unsigned char)p[-1]) || strncmp(p, name, nl) || p[nl] != '=' || (p[nl + 1] != '"' && p[nl + 1] != '\''))
      continue;
    const char q = p[nl + 1];
    const char *v = p + nl + 2, *e = strchr(v, q);
    if (!e || e > end) return 0;
    const size_t l = (size_t)(e - v) < cap - 1 ? (size_t)(e - v) : cap - 1;
    memcpy(val, v, l);
    val[l] = 0;
    return 1;
  }
  return 0;
}

/* characters of XML text up to '<' with entities counted as one; the decoded text into out */
static size_t svg_text_chars(const char *p, char *out, size_t cap) {
  size_t n = 0, o = 0;
  while (*p && *p != '<') {
    char c = *p;
    if (*p == '&') {
      const char *e = strchr(p, ';');
      if (!strncmp(p, "&amp;", 5)) c = '&';
      else if (!strncmp(p, "&lt;", 4)) c = '<';
      else if (!strncmp(p, "&gt;", 4)) c = '>';
      else if (!strncmp(p, "&quot;", 6)) c = '"';
      else if (!strncmp(p, "&apos;", 6)) c = '\'';
      else c = '?';
      p = e ? e + 1 : p + 1;
    } else {
      p++;
    }
    if (((unsigned char)c & 0xC0) != 0x80) n++;
    if (o + 1 < cap) out[o++] = c;
  }
  if (cap) out[o] = 0;
  return n;
}

typedef struct {
  double x0, y0, x1, y1;
  char text[160];
} svg_box;

/* The boxes of every <text> element; returns their count (at most cap). */
static int svg_text_boxes(const char *svg, svg_box *b, int cap, double *doc_w, double *doc_h) {
  char v[64];
  double root_fs = 12;
  const char *root = strstr(svg, "<svg");
  *doc_w = *doc_h = 0;
  if (root) {
    if (svg_attr(root, "font-size", v, sizeof v)) root_fs = atof(v);
    if (svg_attr(root, "width", v, sizeof v)) *doc_w = atof(v);
    if (svg_attr(root, "height", v, sizeof v)) *doc_h = atof(v);
  }
  int n = 0;
  for (const char *p = strstr(svg, "<text"); p && n < cap; p = strstr(p + 1, "<text")) {
    if (p[5] != ' ' && p[5] != '>') continue;
    double x = 0, y = 0, fs = root_fs;
    if (svg_attr(p, "x", v, sizeof v)) x = atof(v);
    if (svg_attr(p, "y", v, sizeof v)) y = atof(v);
    if (svg_attr(p, "font-size", v, sizeof v)) fs = atof(v);
    int anchor = 0;
    if (svg_attr(p, "text-anchor", v, sizeof v)) anchor = !strcmp(v, "middle") ? 1 : !strcmp(v, "end") ? 2 : 0;
    const char *content = strchr(p, '>');
    if (!content) break;
    const size_t chars = svg_text_chars(content + 1, b[n].text, sizeof b[n].text);
    const double w = 0.6 * fs * (double)chars;
    const double x0 = anchor == 1 ? x - w / 2 : anchor == 2 ? x - w : x;
    b[n].x0 = x0, b[n].x1 = x0 + w, b[n].y0 = y - 0.8 * fs, b[n].y1 = y + 0.2 * fs;
    double a, cx, cy;
    if (svg_attr(p, "transform", v, sizeof v) && sscanf(v, "rotate(%lf %lf %lf)", &a, &cx, &cy) == 3 && a == -90) {
      /* rotated a quarter turn counter-clockwise about (cx, cy): (x, y) -> (cx + (y - cy), cy - (x - cx)) */
      const svg_box r = b[n];
      b[n].x0 = cx + (r.y0 - cy), b[n].x1 = cx + (r.y1 - cy);
      b[n].y0 = cy - (r.x1 - cx), b[n].y1 = cy - (r.x0 - cx);
    }
    n++;
  }
  return n;
}

static int svg_text_check(const char *svg, char *why, size_t cap) {
  static svg_box b[2048];
  double W, H;
  const int n = svg_text_boxes(svg, b, 2048, &W, &H);
  for (int i = 0; i < n; i++) {
    if (b[i].x0 < -0.5 || b[i].y0 < -0.5 || (W > 0 && b[i].x1 > W + 0.5) || (H > 0 && b[i].y1 > H + 0.5))
      return snprintf(why, cap, "text '%s' [%.1f,%.1f]-[%.1f,%.1f] leaves the %gx%g document", b[i].text, b[i].x0,
                      b[i].y0, b[i].x1, b[i].y1, W, H),
             1;
    for (int j = 0; j < i; j++)
      if (b[i].x0 < b[j].x1 && b[j].x0 < b[i].x1 && b[i].y0 < b[j].y1 && b[j].y0 < b[i].y1)
        return snprintf(why, cap, "text '%s' overlaps text '%s'", b[i].text, b[j].text), 1;
  }
  return 0;
}

/* [begin, end) of <g id="id"> ... </g> (no nested groups), or NULL */
static const char *svg_group(const char *svg, const char *id, const char **end) {
  char open[80];
  snprintf(open, sizeof open, "<g id=\"%s\">", id);
  const char *b = strstr(svg, open);
  if (!b) return NULL;
  *end = strstr(b, "</g>");
  return *end ? b : NULL;
}

/* distinct stroke and fill colours of the non-text elements in [b, e) */
static int svg_colors(const char *b, const char *e, char (*set)[32], int cap) {
  int n = 0;
  for (const char *p = strchr(b, '<'); p && p < e; p = strchr(p + 1, '<')) {
    if (!strncmp(p, "<text", 5) || p[1] == '/') continue;
    static const char *attrs[] = {"stroke", "fill"};
    for (int a = 0; a < 2; a++) {
      char v[32];
      if (!svg_attr(p, attrs[a], v, sizeof v) || !strcmp(v, "none") || !strcmp(v, "white")) continue;
      int k = 0;
      while (k < n && strcmp(set[k], v)) k++;
      if (k == n && n < cap) snprintf(set[n++], sizeof set[0], "%s", v);
    }
  }
  return n;
}

static int svg_legend_check(const char *svg, char *why, size_t cap) {
  const char *se, *le;
  const char *s = svg_group(svg, "series", &se), *l = svg_group(svg, "legend", &le);
  if (!s || !l) return snprintf(why, cap, "no %s group", s ? "legend" : "series"), 1;
  char sc[64][32], lc[64][32];
  const int ns = svg_colors(s, se, sc, 64), nl = svg_colors(l, le, lc, 64);
  for (int i = 0; i < ns; i++) {
    int k = 0;
    while (k < nl && strcmp(sc[i], lc[k])) k++;
    if (k == nl) return snprintf(why, cap, "a series is drawn in %s, which no legend sample shows", sc[i]), 1;
  }
  for (int i = 0; i < nl; i++) {
    int k = 0;
    while (k < ns && strcmp(lc[i], sc[k])) k++;
    if (k == ns) return snprintf(why, cap, "the legend shows %s, which no series is drawn in", lc[i]), 1;
  }
  return 0;
}

/* the decoded text of every <text> inside <g id="id">, lines joined by ' ' (malloc'd), or NULL */
static char *svg_group_text(const char *svg, const char *id) {
  const char *e;
  const char *b = svg_group(svg, id, &e);
  if (!b) return NULL;
  const size_t cap = (size_t)(e - b) + 1;
  char *out = malloc(cap);
  if (!out) return NULL;
  size_t o = 0;
  out[0] = 0;
  for (const char *p = strstr(b, "<text"); p && p < e; p = strstr(p + 1, "<text")) {
    const char *c = strchr(p, '>');
    if (!c) break;
    char t[1024];
    svg_text_chars(c + 1, t, sizeof t);
    o += (size_t)snprintf(out + o, cap - o, "%s%s", o ? " " : "", t);
    if (o >= cap) break;
  }
  return out;
}

#endif
