/* Pareto frontier (dominated points removed, order, ties) and the SVG
 * writer (well-formed, required elements, escaping; no two texts overlap,
 * legend samples in the series' colours, the caption) of launch/tools/plot_svg.c. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"
#include "launch/tools/pareto.h"
#include "launch/tools/plot_svg.h"
#include "tests/bench/svg_check.h"
#include "tests/bench/xml_check.h"

static int same(const int *got, int n_got, const int *want, int n_want) {
  if (n_got != n_want) return 0;
  for (int i = 0; i < n_got; i++)
    if (got[i] != want[i]) return 0;
  return 1;
}

static void frontier(void) {
  int idx[16];
  /* 3 is dominated by 1 (same x, lower y); 4 by everything; 5 duplicates 2 */
  {
    const double x[] = {1, 2, 3, 2, 0.5, 3};
    const double y[] = {5, 4, 3, 2, 1, 3};
    const int want[] = {0, 1, 2};
    const int n = tpd_pareto_frontier(x, y, 6, idx);
    CHECK(same(idx, n, want, 3));
  }
  /* order: increasing x (so decreasing y), whatever the input order */
  {
    const double x[] = {30, 10, 20};
    const double y[] = {1, 3, 2};
    const int want[] = {1, 2, 0};
    const int n = tpd_pareto_frontier(x, y, 3, idx);
    CHECK(same(idx, n, want, 3));
  }
  /* ties: equal y, smaller x is dominated; equal x, smaller y is dominated */
  {
    const double x[] = {1, 2, 2, 4};
    const double y[] = {5, 5, 4, 1};
    const int want[] = {1, 3};
    const int n = tpd_pareto_frontier(x, y, 4, idx);
    CHECK(same(idx, n, want, 2));
  }
  /* exact duplicates: only the lowest index survives */
  {
    const double x[] = {2, 2, 2};
    const double y[] = {7, 7, 7};
    const int want[] = {0};
    const int n = tpd_pareto_frontier(x, y, 3, idx);
    CHECK(same(idx, n, want, 1));
  }
  /* one point dominates all */
  {
    const double x[] = {1, 2, 9, 3};
    const double y[] = {1, 2, 9, 3};
    const int want[] = {2};
    const int n = tpd_pareto_frontier(x, y, 4, idx);
    CHECK(same(idx, n, want, 1));
  }
  /* NaN and infinities are ignored; empty input */
  {
    const double x[] = {NAN, 1, INFINITY, 2};
    const double y[] = {100, 2, 100, 1};
    const int want[] = {1, 3};
    const int n = tpd_pareto_frontier(x, y, 4, idx);
    CHECK(same(idx, n, want, 2));
    CHECK(tpd_pareto_frontier(x, y, 0, idx) == 0);
  }
  /* a larger random set: no survivor is dominated, every dropped point is */
  {
    double x[200], y[200];
    int fr[200];
    unsigned s = 12345;
    for (int i = 0; i < 200; i++) {
      s = s * 1103515245u + 12345u;
      x[i] = (s >> 16) % 50;
      s = s * 1103515245u + 12345u;
      y[i] = (s >> 16) % 50;
    }
    const int n = tpd_pareto_frontier(x, y, 200, fr);
    int on[200] = {0};
    for (int k = 0; k < n; k++) on[fr[k]] = 1;
    for (int k = 1; k < n; k++) CHECK(x[fr[k]] > x[fr[k - 1]] && y[fr[k]] < y[fr[k - 1]]);
    for (int i = 0; i < 200; i++) {
      int dominated = 0, dup_lower = 0;
      for (int j = 0; j < 200; j++) {
        if (x[j] >= x[i] && y[j] >= y[i] && (x[j] > x[i] || y[j] > y[i])) dominated = 1;
        if (j < i && x[j] == x[i] && y[j] == y[i]) dup_lower = 1;
      }
      CHECK(on[i] == (!dominated && !dup_lower));
    }
  }
}

static int count(const char *hay, const char *needle) {
  int n = 0;
  for (const char *p = strstr(hay, needle); p; p = strstr(p + 1, needle)) n++;
  return n;
}

static void svg(void) {
  const double mx[] = {2800, 2400, 1800, 1150, 590}, my[] = {1400, 2400, 3600, 4600, 4700};
  const char *ml[] = {"b1 tp2", "b2 tp2", "b4 tp2", "b8 tp2", "b16 tp2"};
  const double fx[] = {590, 1150, 1800, 2400, 2800}, fy[] = {4700, 4600, 3600, 2400, 1400};
  const double px[] = {317, 314, 0, 298, -5}, py[] = {317, 628, 1000, 2387, 10}; /* 0 and -5: skipped on log x */
  const char *pl[] = {"TP1 b1", NULL, "zero", "b8", "negative"};
  const tpd_plot_series se[] = {
      {"measured <cpu> & co", mx, my, ml, 5, TPD_PLOT_POINTS, TPD_MARK_CIRCLE, "#1f77b4"},
      {"measured Pareto frontier", fx, fy, NULL, 5, TPD_PLOT_LINE, TPD_MARK_CIRCLE, "#1f77b4"},
      {"predicted (speed-of-light, 8x H200 SXM)", px, py, pl, 5, TPD_PLOT_DASHED, TPD_MARK_CIRCLE, "#d62728"},
  };
  const tpd_plot_opts o = {"title \"quoted\"", "sub 'title'", "tokens/s per user", "tokens/s/W", 1, 1, 0, 0,
                           "Measured: cpu <small> on this machine. Predicted: 8x H200, not measured."};
  char *s = NULL;
  CHECK(tpd_plot_svg(&o, se, 3, &s) == TPD_OK);
  if (!s) return;
  char why[200] = "";
  const int bad = xml_check(s, why, sizeof why);
  if (bad) fprintf(stderr, "svg not well-formed: %s\n", why);
  CHECK(!bad);
  CHECK(strstr(s, "<svg xmlns=\"http://www.w3.org/2000/svg\"") != NULL);
  CHECK(count(s, "<polyline") == 2);
  CHECK(count(s, "stroke-dasharray") == 2); /* the dashed series and its legend sample */
  CHECK(count(s, "<circle") >= 5 + 3 + 1);  /* measured, predicted (3 drawable), legend */
  CHECK(strstr(s, "measured &lt;cpu&gt; &amp; co") != NULL);
  CHECK(strstr(s, "title &quot;quoted&quot;") != NULL);
  CHECK(strstr(s, "predicted (speed-of-light, 8x H200 SXM)") != NULL);
  CHECK(strstr(s, ">b16 tp2<") != NULL);
  CHECK(strstr(s, ">TP1 b1<") != NULL);
  CHECK(strstr(s, ">negative<") == NULL && strstr(s, ">zero<") == NULL);
  CHECK(strstr(s, ">tokens/s per user<") != NULL);
  CHECK(strstr(s, "rotate(-90") != NULL); /* the y label */
  CHECK(strstr(s, ">1k<") != NULL);       /* a log tick label */
  CHECK(strstr(s, "nan") == NULL && strstr(s, "inf") == NULL);
  CHECK(svg_text_check(s, why, sizeof why) == 0, "%s", why);
  CHECK(svg_legend_check(s, why, sizeof why) == 0, "%s", why);
  char *cap = svg_group_text(s, "caption");
  CHECK(cap && !strcmp(cap, "Measured: cpu <small> on this machine. Predicted: 8x H200, not measured."),
        "caption: '%s'", cap ? cap : "(none)");
  free(cap);
  free(s);

  /* linear axes, one point, no legend */
  const double ox[] = {5}, oy[] = {5};
  const tpd_plot_series one = {NULL, ox, oy, NULL, 1, TPD_PLOT_POINTS, TPD_MARK_SQUARE, "black"};
  const tpd_plot_opts lin = {NULL, NULL, NULL, NULL, 0, 0, 400, 300, NULL};
  CHECK(tpd_plot_svg(&lin, &one, 1, &s) == TPD_OK);
  if (s) {
    CHECK(xml_check(s, why, sizeof why) == 0);
    CHECK(strstr(s, "<rect x=") != NULL);
    CHECK(strstr(s, "nan") == NULL);
    free(s);
  }
  /* no series at all still makes a valid document */
  CHECK(tpd_plot_svg(&lin, NULL, 0, &s) == TPD_OK);
  if (s) {
    CHECK(xml_check(s, why, sizeof why) == 0);
    free(s);
  }
  /* the checker itself rejects broken documents */
  CHECK(xml_check("<svg><g></svg>", why, sizeof why) != 0);
  CHECK(xml_check("<svg a=b></svg>", why, sizeof why) != 0);
  CHECK(xml_check("<svg>a & b</svg>", why, sizeof why) != 0);
  CHECK(xml_check("<svg/><svg/>", why, sizeof why) != 0);
  CHECK(xml_check("<svg><text>x &amp; y &#x3c;</text></svg>", why, sizeof why) == 0);
}

/* The bench's predicted curves: one named series, then curves in other
 * colours without a name of their own.  Each colour drawn must be in the
 * legend (the nameless ones join the named entry's sample). */
static void legend_colours(void) {
  const double x1[] = {10, 20, 30}, y1[] = {5, 8, 9}, x2[] = {15, 25, 35}, y2[] = {3, 6, 7}, x3[] = {12, 22}, y3[] = {1, 2};
  const tpd_plot_series se[] = {
      {"measured", x3, y3, NULL, 2, TPD_PLOT_POINTS, TPD_MARK_SQUARE, "#1f77b4"},
      {"predicted, TP 1..2", x1, y1, NULL, 3, TPD_PLOT_DASHED, TPD_MARK_CIRCLE, "#d62728"},
      {NULL, x2, y2, NULL, 3, TPD_PLOT_DASHED, TPD_MARK_CIRCLE, "#ff7f0e"},
      {"frontier", x1, y1, NULL, 3, TPD_PLOT_WIDE, TPD_MARK_CIRCLE, "#444444"},
  };
  const tpd_plot_opts o = {"t", NULL, "x", "y", 1, 1, 600, 400, NULL};
  char *s = NULL, why[300] = "";
  CHECK(tpd_plot_svg(&o, se, 4, &s) == TPD_OK);
  if (!s) return;
  CHECK(xml_check(s, why, sizeof why) == 0, "%s", why);
  CHECK(svg_legend_check(s, why, sizeof why) == 0, "%s", why);
  CHECK(svg_text_check(s, why, sizeof why) == 0, "%s", why);
  CHECK(strstr(s, "id=\"caption\"") == NULL); /* no caption asked for */
  free(s);
  /* the checker itself sees a legend colour no series has, and the reverse */
  const char *bad1 = "<svg><g id=\"series\"><line stroke=\"#111111\"/></g><g id=\"legend\"><line stroke=\"#222222\"/></g></svg>";
  CHECK(svg_legend_check(bad1, why, sizeof why) != 0);
  const char *bad2 = "<svg><g id=\"series\"><line stroke=\"#111111\"/><circle fill=\"#333333\" stroke=\"#333333\"/></g>"
                     "<g id=\"legend\"><line stroke=\"#111111\"/><text fill=\"#333333\">x</text></g></svg>";
  CHECK(svg_legend_check(bad2, why, sizeof why) != 0);
}

/* Forty labelled points in a tight cluster, a long subtitle and caption:
 * no text may overlap another or leave the document; every label is either
 * drawn or listed under the legend. */
static void crowded(void) {
  enum { N = 40 };
  double x[N], y[N];
  char lab[N][16];
  const char *lp[N];
  unsigned r = 777;
  for (int i = 0; i < N; i++) {
    r = r * 1103515245u + 12345u;
    x[i] = 100 + (r >> 16) % 40;
    r = r * 1103515245u + 12345u;
    y[i] = 50 + (r >> 16) % 20;
    snprintf(lab[i], sizeof lab[i], "b%d tp%d", i + 1, 1 + i % 8);
    lp[i] = lab[i];
  }
  const double fx[] = {1, 1000}, fy[] = {1, 1000};
  const tpd_plot_series se[] = {
      {"a legend entry long enough to need wrapping at this width: measured points of the crowded cluster, "
       "labelled by batch and TP, drawn in one colour",
       x, y, lp, N, TPD_PLOT_POINTS, TPD_MARK_CIRCLE, "#1f77b4"},
      {"range", fx, fy, NULL, 2, TPD_PLOT_LINE, TPD_MARK_CIRCLE, "#2ca02c"},
  };
  char sub[400], caption[900];
  snprintf(sub, sizeof sub, "a subtitle that is far too long for one line of a 500-pixel plot, so the writer must "
                            "wrap it over several lines and move the plot down to make room");
  snprintf(caption, sizeof caption, "Measured: tiny preset on this machine (2 ranks x 1 thread).\nPredicted: "
                                    "speed-of-light floor of the 8b shape on 8x H200 SXM, datasheet figures, not "
                                    "measured; the two are different models on different hardware.");
  const tpd_plot_opts o = {"crowded", sub, "tokens/s per user", "tokens/s per rank", 1, 1, 500, 360, caption};
  char *s = NULL, why[300] = "";
  CHECK(tpd_plot_svg(&o, se, 2, &s) == TPD_OK);
  if (!s) return;
  CHECK(xml_check(s, why, sizeof why) == 0, "%s", why);
  CHECK(svg_text_check(s, why, sizeof why) == 0, "%s", why);
  CHECK(svg_legend_check(s, why, sizeof why) == 0, "%s", why);
  char *leg = svg_group_text(s, "legend");
  int drawn = 0, listed = 0;
  for (int i = 0; i < N; i++) {
    char tag[40];
    snprintf(tag, sizeof tag, ">%.15s<", lab[i]);
    const int d = strstr(s, tag) != NULL;
    /* listed: the name followed by ',' or the end of the list */
    int l = 0;
    for (const char *p = leg ? strstr(leg, lab[i]) : NULL; p && !l; p = strstr(p + 1, lab[i]))
      l = p[strlen(lab[i])] == ',' || p[strlen(lab[i])] == 0;
    CHECK(d + l == 1, "label %s: drawn %d, listed %d", lab[i], d, l);
    drawn += d, listed += l;
  }
  CHECK(drawn > 0 && listed > 0, "drawn %d, listed %d", drawn, listed); /* the cluster is too tight for all */
  CHECK(leg && strstr(leg, "not labelled (no room): ") != NULL);
  free(leg);
  char *cap = svg_group_text(s, "caption");
  CHECK(cap && strstr(cap, "Measured: tiny preset") && strstr(cap, "not measured;"), "caption '%s'", cap ? cap : "");
  free(cap);
  /* the checker itself finds two overlapping texts and one outside the page */
  CHECK(svg_text_check("<svg width=\"100\" height=\"100\"><text x=\"10\" y=\"20\">abc</text>"
                       "<text x=\"20\" y=\"24\">def</text></svg>", why, sizeof why) != 0);
  CHECK(svg_text_check("<svg width=\"100\" height=\"100\"><text x=\"90\" y=\"20\">abcdef</text></svg>", why,
                       sizeof why) != 0);
  CHECK(svg_text_check("<svg width=\"100\" height=\"100\"><text x=\"10\" y=\"20\">abc</text>"
                       "<text x=\"10\" y=\"40\">def</text></svg>", why, sizeof why) == 0);
  free(s);
}

int main(void) {
  frontier();
  svg();
  legend_colours();
  crowded();
  if (tu_failures) {
    fprintf(stderr, "test_pareto: %d check(s) failed\n", tu_failures);
    return 1;
  }
  printf("test_pareto: ok\n");
  return 0;
}
