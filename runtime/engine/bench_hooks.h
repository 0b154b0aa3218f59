/* Benchmark-only hooks into the engine: not part of the public API
 * (runtime/engine/tpdecode.h) and not for servers.  tpdecode-bench and the
 * tests use them to time decode at a long context and to measure the time
 * the all-reduces add. */
#ifndef TPD_BENCH_HOOKS_H
#define TPD_BENCH_HOOKS_H

#include "runtime/engine/tpdecode.h"

#ifdef __cplusplus
extern "C" {
#endif

/* An engine option for tpd_engine_set_option / get_option: leave out the
 * all-reduces, so that the time they add (exposed communication) can be
 * measured; the results are then wrong.  Changing it drops the captured
 * decode graphs. */
#define TPD_OPT_SKIP_ALLREDUCE ((tpd_engine_option)64)

/* Advances a sequence by n_tokens positions without computing them (their KV
 * entries keep whatever the cache holds), so decode can be timed at a long
 * context without paying for its prefill. */
tpd_status tpd_engine_seq_skip(tpd_engine *e, int slot, int n_tokens);

/* Tests only: this rank fails its forward number `after` (counted from 0 at
 * create, every forward of every step) with `status`, as if an op had
 * failed there; after < 0 disarms.  Each rank arms its own (a follower
 * calls it before tpd_engine_follow). */
void tpd_engine_inject_fault(tpd_engine *e, long after, tpd_status status);

#ifdef __cplusplus
}
#endif
#endif
