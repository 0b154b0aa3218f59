/* Pareto frontier (dominated points removed, order, ties) and the SVG
 * writer (well-formed, required elements, escaping) of runtime/pareto.c. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"
#include "runtime/pareto.h"
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
  const tpd_plot_opts o = {"title \"quoted\"", "sub 'title'", "tokens/s per user", "tokens/s/W", 1, 1, 0, 0};
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
  free(s);

  /* linear axes, one point, no legend */
  const double ox[] = {5}, oy[] = {5};
  const tpd_plot_series one = {NULL, ox, oy, NULL, 1, TPD_PLOT_POINTS, TPD_MARK_SQUARE, "black"};
  const tpd_plot_opts lin = {NULL, NULL, NULL, NULL, 0, 0, 400, 300};
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

int main(void) {
  frontier();
  svg();
  if (tu_failures) {
    fprintf(stderr, "test_pareto: %d check(s) failed\n", tu_failures);
    return 1;
  }
  printf("test_pareto: ok\n");
  return 0;
}
