/* Transitional (issue 9): the synthetic-model writer moved to the tools
 * library, launch/tools/synth.h.  tests/gpu/ still includes this path; once
 * it includes launch/tools/synth.h this file goes, together with its entry
 * in the known exceptions of tests/layers/check_layers.sh. */
#include "launch/tools/synth.h"
