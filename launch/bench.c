/* tpdecode-bench: decode throughput against a memory-bandwidth floor
 * measured in the same run.
 *   [mpirun -np N] tpdecode-bench --preset 1b --dtype bf16 --batch 1,16 --threads 2 */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "kernels/cpu/membw.h"
#include "launch/cli.h"
#include "runtime/fileio.h"
#include "runtime/generate.h"
#include "runtime/synth.h"
#include "runtime/timer.h"
#include "runtime/tpdecode.h"

static const char *PROG = "tpdecode-bench";

typedef struct {
  const char *model, *preset, *cache, *backend;
  tpd_dtype dtype;
  long seed, ctx, steps, warmup, threads, membw_mb;
  int batches[32], n_batches;
  int json, csv;
} bopts;

typedef struct {
  int batch, ctx, steps;
  double ms_med, ms_p90, tok_s_user, tok_s_sys, bytes_step, gbs, floor_gbs, frac;
} brow;

static void usage(FILE *f) {
  fprintf(f,
          "usage: [mpirun -np N] tpdecode-bench (-m DIR | --preset tiny|small|1b|8b) [options]\n"
          "  --dtype f32|bf16|f16   dtype of a preset model (default bf16)\n"
          "  --seed N               seed of a preset model (default 1)\n"
          "  --model-cache DIR      where preset models are written (default /tmp/tpdecode-models)\n"
          "  --batch 1,16           batch sizes (default 1,16)\n"
          "  --ctx N                tokens already in each sequence's KV cache (default 64)\n"
          "  --steps N              timed decode steps per batch size (default 16)\n"
          "  --warmup N             untimed steps first (default 3)\n"
          "  --threads N            CPU threads per rank (default: cores / ranks on the node)\n"
          "  --membw-mb N           bytes streamed by the bandwidth probe (default 1024 MB)\n"
          "  --backend cpu|cuda     (default cpu)\n"
          "  --json | --csv         machine-readable output (rank 0)\n");
}

static tpd_status parse(int argc, char **argv, bopts *o) {
  memset(o, 0, sizeof *o);
  o->cache = "/tmp/tpdecode-models";
  o->backend = "cpu";
  o->dtype = TPD_BF16;
  o->seed = 1;
  o->ctx = 64;
  o->steps = 16;
  o->warmup = 3;
  o->membw_mb = 1024;
  o->batches[0] = 1;
  o->batches[1] = 16;
  o->n_batches = 2;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    long iv;
    if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
      usage(stdout);
      exit(0);
    }
    if (!strcmp(a, "--json")) { o->json = 1; continue; }
    if (!strcmp(a, "--csv")) { o->csv = 1; continue; }
    if (!v) return TPD_FAIL(TPD_ERR_ARG, "option %s needs a value", a);
    i++;
    long *field = NULL;
    long lo = 1;
    if (!strcmp(a, "-m") || !strcmp(a, "--model")) o->model = v;
    else if (!strcmp(a, "--preset")) o->preset = v;
    else if (!strcmp(a, "--model-cache")) o->cache = v;
    else if (!strcmp(a, "--backend")) o->backend = v;
    else if (!strcmp(a, "--dtype")) {
      if (!strcmp(v, "f32")) o->dtype = TPD_F32;
      else if (!strcmp(v, "bf16")) o->dtype = TPD_BF16;
      else if (!strcmp(v, "f16")) o->dtype = TPD_F16;
      else return TPD_FAIL(TPD_ERR_ARG, "--dtype '%s': expected f32, bf16 or f16", v);
    } else if (!strcmp(a, "--batch")) {
      int32_t *ids = NULL;
      const char *err = NULL;
      int n = tpd_cli_ids(v, &ids, &err);
      if (n < 0) return TPD_FAIL(TPD_ERR_ARG, "--batch '%s': %s", v, err);
      if (n > 32) n = 32;
      o->n_batches = 0;
      for (int k = 0; k < n; k++) {
        if (ids[k] < 1) {
          free(ids);
          return TPD_FAIL(TPD_ERR_ARG, "--batch: sizes must be >= 1");
        }
        o->batches[o->n_batches++] = ids[k];
      }
      free(ids);
    } else if (!strcmp(a, "--seed")) field = &o->seed, lo = 0;
    else if (!strcmp(a, "--ctx")) field = &o->ctx, lo = 0;
    else if (!strcmp(a, "--steps")) field = &o->steps;
    else if (!strcmp(a, "--warmup")) field = &o->warmup, lo = 0;
    else if (!strcmp(a, "--threads")) field = &o->threads;
    else if (!strcmp(a, "--membw-mb")) field = &o->membw_mb;
    else return TPD_FAIL(TPD_ERR_ARG, "unknown option '%s' (see --help)", a);
    if (field) {
      if (!tpd_cli_int(v, lo, 1L << 40, &iv)) return TPD_FAIL(TPD_ERR_ARG, "%s '%s': expected an integer >= %ld", a, v, lo);
      *field = iv;
    }
  }
  if (!o->model == !o->preset) return TPD_FAIL(TPD_ERR_ARG, "pass exactly one of -m DIR and --preset NAME");
  return TPD_OK;
}

/* Writes the preset model once (rank 0) into the cache; every rank gets its path. */
static tpd_status ensure_preset(const bopts *o, tpd_comm *comm, char *dir, size_t cap) {
  tpd_synth_spec s;
  TPD_TRY(tpd_synth_preset(o->preset, &s));
  s.dtype = o->dtype;
  s.seed = (unsigned long long)o->seed;
  snprintf(dir, cap, "%s/%s-%s-s%ld", o->cache, o->preset, tpd_dtype_name(o->dtype), o->seed);
  char done[4200];
  snprintf(done, sizeof done, "%s/.complete", dir);
  tpd_status st = TPD_OK;
  if (comm->rank == 0 && !tpd_path_exists(done)) {
    fprintf(stderr, "%s: writing the %s preset (%s) to %s\n", PROG, o->preset, tpd_dtype_name(o->dtype), dir);
    st = tpd_synth_write(&s, dir);
    if (st == TPD_OK) st = tpd_write_file(done, "", 0);
  }
  int bad = -1;
  TPD_TRY(tpd_comm_agree(comm, st == TPD_OK, &bad));
  if (bad >= 0 && st == TPD_OK) return TPD_FAIL(TPD_ERR_IO, "rank %d could not write the preset model", bad);
  return st;
}

/* Times decode steps at batch B; before each timed step the bandwidth probe
 * makes one pass, so floor and steps sample the machine alike. */
static tpd_status run_batch(tpd_engine *e, const bopts *o, int B, tpd_membw_probe *probe, brow *row) {
  const tpd_model_config *c = tpd_engine_config(e);
  tpd_engine_info info;
  tpd_engine_get_info(e, &info);
  int *slots = malloc(sizeof(int) * (size_t)B);
  tpd_step_item *items = calloc((size_t)B, sizeof *items);
  int32_t *tok = malloc(sizeof(int32_t) * (size_t)B);
  const int n = (int)(o->warmup + o->steps);
  double *ms = malloc(sizeof(double) * (size_t)n);
  double *floor_gbs = malloc(sizeof(double) * (size_t)n);
  tpd_status st = TPD_OK;
  int opened = 0;
  if (!slots || !items || !tok || !ms || !floor_gbs) {
    st = TPD_FAIL(TPD_ERR_OOM, "out of memory");
    goto done;
  }
  for (int b = 0; b < B; b++) {
    TPD_TRY_GOTO(tpd_engine_seq_open(e, &slots[b]), st, done);
    opened++;
    TPD_TRY_GOTO(tpd_engine_seq_skip(e, slots[b], (int)o->ctx), st, done);
    tok[b] = (int32_t)((7919u * (unsigned)(b + 1)) % (unsigned)c->vocab);
  }
  double kv_tokens = 0;
  for (int s = 0; s < n; s++) {
    for (int b = 0; b < B; b++) {
      items[b].slot = slots[b];
      items[b].n_tokens = 1;
      items[b].tokens = &tok[b];
      items[b].stream = (uint64_t)b;
    }
    floor_gbs[s] = tpd_membw_pass(probe);
    TPD_TRY_GOTO(tpd_engine_comm(e)->ops->barrier(tpd_engine_comm(e)), st, done);
    const double t0 = tpd_now_ms();
    TPD_TRY_GOTO(tpd_engine_step(e, items, B, tok, NULL), st, done);
    ms[s] = tpd_now_ms() - t0;
    if (s >= o->warmup)
      for (int b = 0; b < B; b++) kv_tokens += tpd_engine_seq_len(e, slots[b]); /* positions read, new one included */
  }
  const double *timed = ms + o->warmup;
  row->batch = B;
  row->ctx = (int)o->ctx;
  row->steps = (int)o->steps;
  row->ms_med = tpd_percentile(timed, (int)o->steps, 50);
  row->ms_p90 = tpd_percentile(timed, (int)o->steps, 90);
  row->tok_s_user = 1e3 / row->ms_med;
  row->tok_s_sys = B * row->tok_s_user;
  row->bytes_step = info.weight_bytes + kv_tokens / (double)o->steps * info.kv_bytes_per_token + B * info.embed_row_bytes;
  row->gbs = row->bytes_step / (row->ms_med * 1e-3) / 1e9;
  row->floor_gbs = tpd_percentile(floor_gbs + o->warmup, (int)o->steps, 50);
  row->frac = row->floor_gbs > 0 ? row->gbs / row->floor_gbs : 0;
done:
  for (int b = 0; b < opened; b++) tpd_engine_seq_close(e, slots[b]);
  free(slots);
  free(items);
  free(tok);
  free(ms);
  free(floor_gbs);
  return st;
}

int main(int argc, char **argv) {
  tpd_comm *comm = NULL;
  tpd_status st = tpd_comm_create_default(&argc, &argv, &comm);
  if (st != TPD_OK) tpd_cli_die(PROG, NULL, st, 1);
  bopts o;
  st = parse(argc, argv, &o);
  if (st != TPD_OK) {
    if (comm->rank == 0) usage(stderr);
    tpd_cli_die(PROG, comm, st, 1);
  }
  char dir[4096];
  if (o.preset) {
    st = ensure_preset(&o, comm, dir, sizeof dir);
    if (st != TPD_OK) tpd_cli_die(PROG, comm, st, 1);
  } else {
    snprintf(dir, sizeof dir, "%s", o.model);
  }
  int max_b = 1;
  for (int i = 0; i < o.n_batches; i++)
    if (o.batches[i] > max_b) max_b = o.batches[i];
  tpd_engine_opts eo = {.model_dir = dir, .backend = o.backend, .n_threads = (int)o.threads, .max_seqs = max_b,
                        .max_ctx = (int)(o.ctx + o.warmup + o.steps + 1), .device = -1};
  tpd_engine *e = NULL;
  st = tpd_engine_create(&eo, comm, &e);
  int bad = -1;
  if (tpd_comm_agree(comm, st == TPD_OK, &bad) != TPD_OK) tpd_cli_die(PROG, comm, TPD_ERR_COMM, 0);
  if (bad >= 0) tpd_cli_die_agreed(PROG, comm, bad);
  tpd_engine_info info;
  tpd_engine_get_info(e, &info);
  const tpd_model_config *c = tpd_engine_config(e);

  /* the floor: read bandwidth with the run's threads, all ranks at once */
  tpd_membw_probe *probe = tpd_membw_open(info.n_threads, (size_t)o.membw_mb << 20, 0);
  if (!probe) tpd_cli_die(PROG, comm, TPD_FAIL(TPD_ERR_OOM, "bandwidth probe: out of memory"), 0);
  tpd_membw_pass(probe); /* warm-up */

  brow rows[32];
  for (int i = 0; i < o.n_batches; i++) {
    st = run_batch(e, &o, o.batches[i], probe, &rows[i]);
    if (st != TPD_OK) tpd_cli_die(PROG, comm, st, st == TPD_ERR_ARG);
  }
  const size_t probe_bytes = tpd_membw_bytes(probe);
  tpd_membw_close(probe);
  if (comm->rank == 0) {
    if (o.json || o.csv) {
      for (int i = 0; i < o.n_batches; i++) {
        const brow *r = &rows[i];
        if (o.csv) {
          if (i == 0) printf("batch,ctx,tp,ms_per_step_median,ms_per_step_p90,tokens_per_s_user,tokens_per_s_system,bytes_per_step,achieved_gbs,read_bw_gbs,fraction_of_read_bw\n");
          printf("%d,%d,%d,%.4f,%.4f,%.3f,%.3f,%.0f,%.3f,%.3f,%.4f\n", r->batch, r->ctx, info.tp, r->ms_med, r->ms_p90,
                 r->tok_s_user, r->tok_s_sys, r->bytes_step, r->gbs, r->floor_gbs, r->frac);
        } else {
          cJSON *j = cJSON_CreateObject();
          cJSON_AddNumberToObject(j, "batch", r->batch);
          cJSON_AddNumberToObject(j, "ctx", r->ctx);
          cJSON_AddNumberToObject(j, "tp", info.tp);
          cJSON_AddStringToObject(j, "backend", info.backend);
          cJSON_AddNumberToObject(j, "ms_per_step_median", r->ms_med);
          cJSON_AddNumberToObject(j, "ms_per_step_p90", r->ms_p90);
          cJSON_AddNumberToObject(j, "tokens_per_s_user", r->tok_s_user);
          cJSON_AddNumberToObject(j, "tokens_per_s_system", r->tok_s_sys);
          cJSON_AddNumberToObject(j, "bytes_per_step", r->bytes_step);
          cJSON_AddNumberToObject(j, "bytes_per_token", r->bytes_step / r->batch);
          cJSON_AddNumberToObject(j, "achieved_gbs", r->gbs);
          cJSON_AddNumberToObject(j, "read_bw_gbs", r->floor_gbs);
          cJSON_AddNumberToObject(j, "fraction_of_read_bw", r->frac);
          char *t = cJSON_PrintUnformatted(j);
          if (t) puts(t);
          free(t);
          cJSON_Delete(j);
        }
      }
    } else {
      printf("%s: %s, %.2f B params (%s weights), TP=%d, %s/%s, %d thread%s per rank\n", PROG,
             o.preset ? o.preset : dir, tpd_config_n_params(c) / 1e9, tpd_dtype_name(info.weight_dtype), info.tp,
             info.backend, info.kernels, info.n_threads, info.n_threads == 1 ? "" : "s");
      printf("floor: memory read bandwidth, %zu MB read by %d thread%s, one pass before each timed step (median)\n",
             probe_bytes >> 20, info.n_threads, info.n_threads == 1 ? "" : "s");
      printf("%6s %6s %10s %10s %11s %11s %10s %10s %10s %9s\n", "batch", "ctx", "ms/step", "p90", "tok/s/user",
             "tok/s sys", "MB/token", "GB/s", "floor GB/s", "of floor");
      for (int i = 0; i < o.n_batches; i++) {
        const brow *r = &rows[i];
        printf("%6d %6d %10.3f %10.3f %11.2f %11.2f %10.2f %10.2f %10.2f %9.3f\n", r->batch, r->ctx, r->ms_med,
               r->ms_p90, r->tok_s_user, r->tok_s_sys, r->bytes_step / r->batch / 1e6, r->gbs, r->floor_gbs, r->frac);
      }
      if (o.n_batches > 1)
        printf("batch %d / batch %d system tokens/s: %.2fx\n", rows[o.n_batches - 1].batch, rows[0].batch,
               rows[o.n_batches - 1].tok_s_sys / rows[0].tok_s_sys);
    }
    fflush(stdout);
  }
  tpd_engine_destroy(e);
  tpd_comm_destroy(comm);
  return 0;
}
