/* mkbad GOOD_DIR OUT_DIR KIND [TENSOR]: writes a broken checkpoint. */
#include <stdio.h>

#include "badfiles.h"

int main(int argc, char **argv) {
  if (argc < 4) {
    fprintf(stderr, "usage: mkbad GOOD_DIR OUT_DIR KIND [TENSOR]\n");
    return 2;
  }
  if (tpd_make_bad(argv[1], argv[2], argv[3], argc > 4 ? argv[4] : "model.layers.0.self_attn.q_proj.weight")) {
    fprintf(stderr, "mkbad: could not write %s variant\n", argv[3]);
    return 1;
  }
  return 0;
}
