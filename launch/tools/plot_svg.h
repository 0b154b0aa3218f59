/* A small hand-written SVG scatter/line plot (the Pareto frontier's
 * picture; the frontier itself is pareto.h).  No I/O: the plot is returned
 * as a string. */
#ifndef TPD_PLOT_SVG_H
#define TPD_PLOT_SVG_H

#include "runtime/base/error.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
  TPD_PLOT_POINTS = 0, /* markers, each with its label */
  TPD_PLOT_LINE,       /* solid polyline through the points in the given order */
  TPD_PLOT_DASHED,     /* dashed polyline with small hollow markers; labels at both ends */
  TPD_PLOT_WIDE        /* wide translucent band under the other series (an envelope); no markers */
} tpd_plot_style;

typedef enum { TPD_MARK_CIRCLE = 0, TPD_MARK_SQUARE, TPD_MARK_DIAMOND } tpd_plot_marker;

typedef struct {
  const char *name;          /* legend entry; NULL: drawn under the previous named series' entry, whose
                              * sample then shows this series' colour too (a series before any named
                              * one is not in the legend) */
  const double *x, *y;       /* [n] */
  const char *const *labels; /* [n] or NULL; NULL entries draw no label */
  int n;
  tpd_plot_style style;
  tpd_plot_marker marker;
  const char *color;         /* CSS colour, e.g. "#1f77b4" */
} tpd_plot_series;

typedef struct {
  const char *title, *subtitle, *x_label, *y_label;
  int log_x, log_y;          /* logarithmic axes (non-positive values are skipped) */
  int width, height;         /* pixels of the plot with its axes (legend and caption add below); 0: 900 x 600 */
  const char *caption;       /* text under the legend (e.g. what is measured, what predicted); NULL: none.
                              * '\n' starts a new paragraph */
} tpd_plot_opts;

/* Text metrics the layout assumes (and the tests check with): a line of n
 * characters at font size fs is 0.6 fs n wide and spans fs vertically,
 * from 0.8 fs above its baseline to 0.2 fs below. */
#define TPD_PLOT_CHAR_W 0.6

/* Renders the series as a standalone SVG document (malloc'd, NUL-terminated,
 * caller frees).  Axis ranges cover every finite point.  Long title,
 * subtitle, legend and caption lines are wrapped to the width.  Point labels
 * are placed where they overlap no other label or marker and stay inside the
 * plot; a label with no such place is left out of the plot and listed under
 * the legend ("not labelled (no room): ...").  Groups: id="series",
 * id="legend", id="caption". */
tpd_status tpd_plot_svg(const tpd_plot_opts *o, const tpd_plot_series *series, int n_series, char **out);

#ifdef __cplusplus
}
#endif
#endif
