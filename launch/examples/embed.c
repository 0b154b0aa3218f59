/* A program on the installed libtpdecode: greedy generation from a few token
 * ids.  Build against an installed tree (docs/usage.md, "C API"):
 *
 *   cc embed.c $(pkg-config --cflags --libs tpdecode) -o embed
 *   ./embed MODEL_DIR [N [ID ...]]      N new tokens (default 8) after the
 *                                       prompt ids (default 1 2 3)
 *
 * Under mpirun every rank runs it (tensor parallel); rank 0 prints
 *   tpd_version: 0.1.0
 *   tokens: 17 4 230 ...
 * Any failure prints tpd_last_error() and exits 1. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <tpdecode.h>

#define MAX_PROMPT 64

static int fail(const char *what, tpd_status st) {
  fprintf(stderr, "embed: %s: %s (%s)\n", what, tpd_last_error(), tpd_status_name(st));
  return 1;
}

static int parse_int(const char *s, long lo, long hi, long *out) {
  char *end = NULL;
  long v = strtol(s, &end, 10);
  if (!*s || *end || v < lo || v > hi) return 0;
  *out = v;
  return 1;
}

int main(int argc, char **argv) {
  /* MPI under mpirun/srun, one rank otherwise; may remove MPI's arguments */
  tpd_comm *comm = NULL;
  tpd_status st = tpd_comm_create_default(&argc, &argv, &comm);
  if (st != TPD_OK) return fail("tpd_comm_create_default", st);
  int rc = 1;
  tpd_engine *e = NULL;
  long n_new = 8, v = 0;
  int32_t prompt[MAX_PROMPT] = {1, 2, 3};
  int n_prompt = 3;
  if (argc < 2 || (argc > 2 && !parse_int(argv[2], 1, 4096, &n_new)) || argc - 3 > MAX_PROMPT) {
    fprintf(stderr, "usage: embed MODEL_DIR [N (1..4096) [ID ...] (at most %d ids)]\n", MAX_PROMPT);
    goto done;
  }
  if (argc > 3) {
    n_prompt = argc - 3;
    for (int i = 0; i < n_prompt; i++) {
      if (!parse_int(argv[3 + i], 0, INT32_MAX, &v)) {
        fprintf(stderr, "embed: prompt id '%s': expected a non-negative integer\n", argv[3 + i]);
        goto done;
      }
      prompt[i] = (int32_t)v;
    }
  }

  /* every rank makes the same calls with the same arguments */
  tpd_engine_opts opts = {TPD_ENGINE_OPTS_INIT, .model_dir = argv[1], .max_seqs = 1, .max_ctx = n_prompt + (int)n_new, .device = -1};
  if ((st = tpd_engine_create(&opts, comm, &e)) != TPD_OK) {
    fail("tpd_engine_create", st);
    goto done;
  }
  int slot = -1;
  if ((st = tpd_engine_seq_open(e, &slot)) != TPD_OK) {
    fail("tpd_engine_seq_open", st);
    goto done;
  }
  int32_t *out = malloc(sizeof *out * (size_t)n_new);
  if (!out) {
    fprintf(stderr, "embed: out of memory\n");
    goto done;
  }
  /* prefill: the whole prompt in one step gives the first token; then one
   * token per step.  A zero tpd_sampling is greedy. */
  tpd_step_item it = {.slot = slot, .n_tokens = n_prompt, .tokens = prompt};
  for (long i = 0; i < n_new; i++) {
    if ((st = tpd_engine_step(e, &it, 1, &out[i], NULL)) != TPD_OK) {
      fail("tpd_engine_step", st);
      free(out);
      goto done;
    }
    it.n_tokens = 1;
    it.tokens = &out[i];
  }
  tpd_engine_seq_close(e, slot);
  if (comm->rank == 0) {
    printf("tpd_version: %s\n", tpd_version());
    printf("tokens:");
    for (long i = 0; i < n_new; i++) printf(" %d", out[i]);
    printf("\n");
  }
  free(out);
  rc = 0;
done:
  tpd_engine_destroy(e);
  tpd_comm_destroy(comm);
  return rc;
}
