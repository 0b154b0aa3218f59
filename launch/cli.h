/* Shared helpers of the command-line programs: strict number parsing and
 * the one error path (one line, every rank exits, no hang). */
#ifndef TPD_CLI_H
#define TPD_CLI_H

#include <stdint.h>

#include "comm/comm.h"
#include "runtime/tpd_error.h"

/* Strict parsers: the whole string must be a number in range. */
int tpd_cli_int(const char *s, long lo, long hi, long *out);
int tpd_cli_float(const char *s, double lo, double hi, double *out);
/* "1,2,3" -> malloc'd ids; returns count, or -1 with a message in *err. */
int tpd_cli_ids(const char *s, int32_t **out, const char **err);

/* The communicator the engine should use for a backend: for "cuda" with
 * more than one rank, NCCL over `comm` when the build has it (every rank or
 * none, agreed collectively); otherwise `comm` itself (a device backend then
 * stages all-reduces through host memory).  *owned is the NCCL communicator
 * to destroy after the engine, or NULL; note (may be NULL) says why NCCL was
 * not used. */
tpd_status tpd_cli_engine_comm(tpd_comm *comm, const char *backend, tpd_comm **use, tpd_comm **owned, char *note,
                               size_t note_cap);

/* Ends the program after a failure recorded with TPD_FAIL.
 * deterministic: every rank hit the same failure at the same point (bad
 * arguments, bad input checked before any collective), so rank 0 reports
 * and all exit normally; otherwise this rank reports and aborts the job so
 * that no peer waits forever in a collective. */
_Noreturn void tpd_cli_die(const char *prog, tpd_comm *comm, tpd_status st, int deterministic);
/* After a collective agreement: the first failed rank reports; all exit. */
_Noreturn void tpd_cli_die_agreed(const char *prog, tpd_comm *comm, int first_failed);

#endif
