/* Shared helpers of the command-line programs: strict number parsing and
 * the one error path (one line, every rank exits, no hang). */
#ifndef TPD_CLI_H
#define TPD_CLI_H

#include <stdint.h>

#include "comm/comm.h"
#include "runtime/base/error.h"

/* Strict parsers: the whole string must be a number in range. */
int tpd_cli_int(const char *s, long lo, long hi, long *out);
int tpd_cli_float(const char *s, double lo, double hi, double *out);
/* "1,2,3" -> malloc'd ids; returns count, or -1 with a message in *err. */
int tpd_cli_ids(const char *s, int32_t **out, const char **err);

/* As tpd_cli_int, for the value v of option opt: on failure records
 * "OPT 'V': expected an integer in [LO, HI]" (">= LO" when hi is LONG_MAX). */
tpd_status tpd_cli_int_opt(const char *opt, const char *v, long lo, long hi, long *out);
/* The value v of a dtype option (--kv-cache, --activations): auto, f32 or
 * bf16 into *out; else records "OPT 'V': expected auto, f32 or bf16". */
tpd_status tpd_cli_dtype_opt(const char *opt, const char *v, const char **out);

/* A rank's share of its node's CPUs: sysconf online CPUs / ranks on the node
 * (at least 1).  The default CPU thread count and the cap on --threads. */
long tpd_cli_cpu_share(const tpd_comm *comm);
/* The thread count to pass to the engine for --threads `requested` (0: the
 * engine's default, which is the share): more than the share is capped to
 * it, with one warning line from the node's first rank. */
int tpd_cli_threads(const char *prog, const tpd_comm *comm, long requested);

/* --version: "PROG VERSION (backends: ...; MPI: yes|no; NCCL: yes|no)". */
void tpd_cli_version(const char *prog);

/* Ends the program after a failure recorded with TPD_FAIL.
 * deterministic: every rank hit the same failure at the same point (bad
 * arguments, bad input checked before any collective), so rank 0 reports
 * and all exit normally; otherwise this rank reports and aborts the job so
 * that no peer waits forever in a collective. */
_Noreturn void tpd_cli_die(const char *prog, tpd_comm *comm, tpd_status st, int deterministic);
/* After a collective agreement: the first failed rank reports; all exit. */
_Noreturn void tpd_cli_die_agreed(const char *prog, tpd_comm *comm, int first_failed);

#endif
