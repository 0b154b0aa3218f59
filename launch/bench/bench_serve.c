/* tpdecode-bench --serve: what serving adds around the engine's forward.
 *
 * (a) The plan broadcast of leader mode.  The same decode steps (batch B,
 *     every sequence prefilled with --ctx prompt tokens, greedy, tokens fed
 *     back) run on an SPMD engine, every rank calling the step, and on a
 *     leader-mode engine, rank 0 stepping and the others in
 *     tpd_engine_follow.  Both engines have the same options and the same
 *     timed communicator around the launch's one.  A follower cannot leave
 *     tpd_engine_follow before shutdown, so the two cannot run side by side:
 *     ROUNDS rounds of (SPMD engine, leader engine) alternate instead, and
 *     each mode's timed steps of all rounds are pooled, so that a drift in
 *     the machine's load touches both alike.  Reported per batch: rank 0's
 *     median step in each mode, their difference, and the host time of the
 *     plan's host_broadcast on rank 0 (the root) per step.  Its floor is
 *     measured in the same rounds on the same communicator and path: an
 *     8-byte host_broadcast, root's time, a barrier before each, median of
 *     many.  A plan broadcast faster than that floor is a measurement fault.
 * (b) The scheduler's host time per step outside the engine (and outside
 *     its callback), tpd_sched_last_step_times, in steady greedy decode of
 *     N requests (ignore_eos, max_tokens past the run): every timed step must
 *     give each of the N requests one token.  The floor here is the engine
 *     step itself: sched / engine is the fraction the scheduler adds.
 * (b) runs on the leader-mode engine of (a)'s last round, after its steps. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "launch/bench/bench.h"
#include "launch/cli.h"
#include "launch/tools/stats.h"
#include "runtime/base/timer.h"
#include "runtime/engine/tpdecode.h"
#include "runtime/engine/tpdecode_sched.h"

#define ROUNDS 3        /* (a): alternations of SPMD and leader engines */
#define FLOOR_REPS 201  /* 8-byte broadcasts timed for the floor, per round */
#define FLOOR_WARMUP 20
#define STEP_TOKENS 512 /* the engine's forward (and the scheduler's budget) */

typedef struct {
  const bopts *o;
  tpd_engine *e;
  tpd_comm *timed;
  const int32_t *prompts; /* [max_seqs * ctx]: sequence i's prompt at i * ctx */
  int ctx, warmup, steps;
} sctx;

static int max_of(const int *v, int n) {
  int m = v[0];
  for (int i = 1; i < n; i++)
    if (v[i] > m) m = v[i];
  return m;
}

/* A failure on any rank: every rank ends here, the first failed one reports. */
static void agree_or_die(tpd_comm *comm, tpd_status st) {
  int bad = -1;
  if (tpd_comm_agree(comm, st == TPD_OK, &bad) != TPD_OK) tpd_cli_die(BENCH_PROG, comm, TPD_ERR_COMM, 0);
  if (bad >= 0) tpd_cli_die_agreed(BENCH_PROG, comm, bad);
}

/* ------------------------------------------------------------------ */
/* (a) decode steps in one mode                                          */

/* The timed steps of one (batch, mode), all rounds: [ROUNDS * steps] each. */
typedef struct {
  double *ms, *bc_ms, *bc_n, *bc_bytes;
  int n;
} samples;

static tpd_status samples_init(samples *p, int cap) {
  p->n = 0;
  p->ms = malloc(sizeof(double) * (size_t)cap * 4);
  if (!p->ms) return TPD_FAIL(TPD_ERR_OOM, "out of memory");
  p->bc_ms = p->ms + cap, p->bc_n = p->ms + 2 * cap, p->bc_bytes = p->ms + 3 * cap;
  return TPD_OK;
}

/* B fresh sequences prefilled with their prompts, warm-up steps, timed
 * steps; per timed step (appended to p) the time of tpd_engine_step on this
 * rank and the host_broadcast calls inside it.  SPMD: every rank calls it;
 * leader mode: rank 0 alone. */
static tpd_status decode_block(const sctx *x, int B, samples *p) {
  const int n = x->warmup + x->steps;
  int *slots = malloc(sizeof(int) * (size_t)B);
  tpd_step_item *items = calloc((size_t)B, sizeof *items);
  int32_t *tok = malloc(sizeof(int32_t) * (size_t)B);
  double *ms = malloc(sizeof(double) * (size_t)n * 4);
  tpd_status st = TPD_OK;
  if (!slots || !items || !tok || !ms) {
    st = TPD_FAIL(TPD_ERR_OOM, "out of memory");
    goto done;
  }
  for (int b = 0; b < B; b++) slots[b] = -1;
  for (int b = 0; b < B; b++) {
    TPD_TRY_GOTO(tpd_engine_seq_open(x->e, &slots[b]), st, done);
    items[b] = (tpd_step_item){.slot = slots[b], .n_tokens = x->ctx, .tokens = x->prompts + (size_t)b * x->ctx,
                               .stream = (uint64_t)b};
  }
  TPD_TRY_GOTO(tpd_engine_step(x->e, items, B, tok, NULL), st, done); /* the prefill */
  for (int b = 0; b < B; b++) items[b].n_tokens = 1, items[b].tokens = &tok[b];
  double *bc_ms = ms + n, *bc_n = ms + 2 * n, *bc_b = ms + 3 * n;
  for (int s = 0; s < n; s++) {
    bench_timed_reset(x->timed);
    const double t0 = tpd_now_ms();
    TPD_TRY_GOTO(tpd_engine_step(x->e, items, B, tok, NULL), st, done);
    ms[s] = tpd_now_ms() - t0;
    long calls = 0;
    bench_timed_host_bcast(x->timed, &bc_ms[s], &bc_b[s], &calls);
    bc_n[s] = (double)calls;
  }
  for (int s = x->warmup; s < n; s++, p->n++) {
    p->ms[p->n] = ms[s], p->bc_ms[p->n] = bc_ms[s], p->bc_n[p->n] = bc_n[s], p->bc_bytes[p->n] = bc_b[s];
  }
done:
  for (int b = 0; slots && b < B; b++)
    if (slots[b] >= 0) tpd_engine_seq_close(x->e, slots[b]);
  free(slots);
  free(items);
  free(tok);
  free(ms);
  return st;
}

/* FLOOR_REPS host_broadcasts of n_bytes from rank 0 through the timed
 * communicator, a barrier before each (every rank arrives together); the
 * host time of each on this rank in us into t.  Receivers clear the buffer
 * before each and check what arrived (outside the clock). */
static tpd_status timed_bcasts(tpd_comm *timed, size_t n_bytes, double *t) {
  unsigned char *buf = malloc(n_bytes);
  if (!buf) return TPD_FAIL(TPD_ERR_OOM, "out of memory");
  tpd_status st = TPD_OK;
  for (int i = 0; i < FLOOR_WARMUP + FLOOR_REPS && st == TPD_OK; i++) {
    for (size_t k = 0; k < n_bytes; k++) buf[k] = timed->rank == 0 ? (unsigned char)(31 * k + (size_t)i + 7) : 0;
    st = timed->ops->barrier(timed);
    bench_timed_reset(timed);
    if (st == TPD_OK) st = timed->ops->host_broadcast(timed, buf, n_bytes, 0);
    double ms = 0;
    bench_timed_host_bcast(timed, &ms, NULL, NULL);
    if (i >= FLOOR_WARMUP) t[i - FLOOR_WARMUP] = ms * 1e3;
    for (size_t k = 0; k < n_bytes && st == TPD_OK; k++)
      if (buf[k] != (unsigned char)(31 * k + (size_t)i + 7))
        st = TPD_FAIL(TPD_ERR_COMM, "a %zu-byte broadcast arrived changed on rank %d (byte %zu)", n_bytes,
                      timed->rank, k);
  }
  free(buf);
  return st;
}

/* ------------------------------------------------------------------ */
/* (b) the scheduler                                                     */

typedef struct {
  int *n_out;   /* per request */
  int started;  /* requests with at least one token */
  long tokens;  /* every token reported */
  int finished; /* finishing events */
} sched_count;

static void on_event(void *user, const tpd_sched_event *ev) {
  sched_count *c = user;
  const int i = (int)(intptr_t)ev->user;
  if (ev->token >= 0) {
    if (c->n_out[i]++ == 0) c->started++;
    c->tokens++;
  }
  if (ev->finish != TPD_FINISH_NONE) c->finished++;
}

/* One scheduler step that must give each of the N running requests a token. */
static tpd_status steady_step(tpd_sched *s, sched_count *c, int N) {
  const long before = c->tokens;
  TPD_TRY(tpd_sched_step(s));
  if (c->tokens - before != N || c->finished)
    return TPD_FAIL(TPD_ERR_INTERNAL,
                    "--serve scheduler at batch %d: a step in steady decode gave %ld tokens and %d requests finished "
                    "(expected %d tokens, none finished); the timing would not be of batch %d",
                    N, c->tokens - before, c->finished, N, N);
  return TPD_OK;
}

static tpd_status sched_row(const sctx *x, int N, int max_tokens, bserve_sched_row *row) {
  sched_count c = {0};
  c.n_out = calloc((size_t)N, sizeof(int));
  double *sched_s = malloc(sizeof(double) * (size_t)x->steps * 2);
  tpd_sched *s = NULL;
  tpd_status st = TPD_OK;
  if (!c.n_out || !sched_s) {
    st = TPD_FAIL(TPD_ERR_OOM, "out of memory");
    goto done;
  }
  double *engine_s = sched_s + x->steps;
  tpd_sched_opts so;
  tpd_sched_opts_init(&so);
  so.callback = on_event;
  so.cb_user = &c;
  so.max_queue = N;
  TPD_TRY_GOTO(tpd_sched_create(x->e, &so, &s), st, done);
  for (int i = 0; i < N; i++) {
    tpd_request r;
    tpd_request_init(&r);
    r.prompt = x->prompts + (size_t)i * x->ctx;
    r.n_prompt = x->ctx;
    r.max_tokens = max_tokens;
    r.ignore_eos = 1;
    r.user = (void *)(intptr_t)i;
    uint64_t id;
    TPD_TRY_GOTO(tpd_sched_submit(s, &r, &id), st, done);
  }
  /* prefill (N * ctx tokens under the budget) until every request decodes */
  const int bound = (int)(((long)N * x->ctx + STEP_TOKENS - 1) / STEP_TOKENS) + 2;
  for (int k = 0; c.started < N; k++) {
    if (k == bound) {
      st = TPD_FAIL(TPD_ERR_INTERNAL, "--serve scheduler at batch %d: %d of %d requests decode after %d steps", N,
                    c.started, N, bound);
      goto done;
    }
    TPD_TRY_GOTO(tpd_sched_step(s), st, done);
  }
  for (int k = 0; k < x->warmup; k++) TPD_TRY_GOTO(steady_step(s, &c, N), st, done);
  for (int k = 0; k < x->steps; k++) {
    TPD_TRY_GOTO(steady_step(s, &c, N), st, done);
    tpd_sched_last_step_times(s, &sched_s[k], &engine_s[k]);
  }
  row->tp = x->timed->size;
  row->batch = N;
  row->prompt = x->ctx;
  row->steps = x->steps;
  row->sched_us = tpd_percentile(sched_s, x->steps, 50) * 1e6;
  row->engine_ms = tpd_percentile(engine_s, x->steps, 50) * 1e3;
  row->ratio = row->sched_us * 1e-3 / row->engine_ms;
  if (!(row->sched_us > 0))
    snprintf(row->fault, sizeof row->fault, "scheduler time %g us: below what the clock resolves", row->sched_us);
  else if (!(row->engine_ms > 0) || !isfinite(row->ratio))
    snprintf(row->fault, sizeof row->fault, "engine step %g ms: not a time", row->engine_ms);
done:
  tpd_sched_destroy(s); /* cancels what is left, closes its slots */
  free(c.n_out);
  free(sched_s);
  return st;
}

/* ------------------------------------------------------------------ */
/* the run                                                               */

/* Rank 0 in leader mode: each batch's steps, then (b) in the last round. */
static tpd_status lead(const sctx *x, samples *leader, int last, int max_tokens, bserve *res) {
  const bopts *o = x->o;
  for (int i = 0; i < o->n_batches; i++) TPD_TRY(decode_block(x, o->batches[i], &leader[i]));
  if (!last) return TPD_OK;
  for (int i = 0; i < o->n_sched_batches; i++) {
    TPD_TRY(sched_row(x, o->sched_batches[i], max_tokens, &res->sched[i]));
    res->n_sched = i + 1;
  }
  return TPD_OK;
}

/* The rows of (a) from the pooled samples (rank 0). */
static void plan_rows(const bopts *o, const samples *spmd, const samples *leader, const double *floor_t, int n_floor,
                      bserve *out) {
  out->floor_us = tpd_percentile(floor_t, n_floor, 50);
  out->floor_reps = n_floor;
  for (int i = 0; i < o->n_batches; i++) {
    bserve_plan_row *r = &out->plan[i];
    const samples *a = &spmd[i], *b = &leader[i];
    r->tp = out->mach.tp;
    r->batch = o->batches[i];
    r->ctx = out->ctx;
    r->steps = b->n;
    r->spmd_ms = tpd_percentile(a->ms, a->n, 50);
    r->spmd_bcasts = tpd_percentile(a->bc_n, a->n, 50);
    r->leader_ms = tpd_percentile(b->ms, b->n, 50);
    r->diff_ms = r->leader_ms - r->spmd_ms;
    if (out->mach.tp == 1) {
      snprintf(r->reason, sizeof r->reason, "TP 1: no plan is broadcast");
      continue;
    }
    r->have_bcast = 1;
    r->bcast_us = tpd_percentile(b->bc_ms, b->n, 50) * 1e3;
    r->bcasts_per_step = tpd_percentile(b->bc_n, b->n, 50);
    r->plan_bytes = r->bcasts_per_step > 0 ? tpd_percentile(b->bc_bytes, b->n, 50) / r->bcasts_per_step : 0;
    r->ratio = r->bcast_us / out->floor_us;
    if (!(r->bcasts_per_step >= 1))
      snprintf(r->fault, sizeof r->fault, "no plan broadcast went through the communicator in a median step");
    else if (!(out->floor_us > 0))
      snprintf(r->fault, sizeof r->fault, "the 8-byte floor measured %g us: below what the clock resolves",
               out->floor_us);
    else if (r->ratio < 1)
      snprintf(r->fault, sizeof r->fault,
               "measurement fault: the plan broadcast (%.3f us) beats the 8-byte floor (%.3f us)", r->bcast_us,
               out->floor_us);
  }
}

tpd_status bench_run_serve(const bopts *o, tpd_comm *comm, const char *dir, bserve *out) {
  memset(out, 0, sizeof *out);
  const char *backend = o->backends[0];
  tpd_comm *nccl = NULL, *use = comm;
  char note[300] = "";
  TPD_TRY(tpd_comm_for_backend(comm, backend, &use, &nccl, note, sizeof note));
  tpd_comm *timed = NULL;
  TPD_TRY(bench_timed_comm_create(use, &timed));
  const int ctx = o->ctxs[0];
  const int max_b = max_of(o->batches, o->n_batches), max_n = max_of(o->sched_batches, o->n_sched_batches);
  const int max_seqs = max_b > max_n ? max_b : max_n;
  /* (b): a request decodes from the step its prefill ends, which may be
   * bound steps before the last one's; then warm-up and timed steps */
  const int bound = (int)(((long)max_n * ctx + STEP_TOKENS - 1) / STEP_TOKENS) + 2;
  const int max_tokens = bound + (int)o->warmup + (int)o->steps + 2;
  const int need_a = (int)(o->warmup + o->steps) + 2;
  const int max_ctx = ctx + (max_tokens > need_a ? max_tokens : need_a);
  out->ctx = ctx;
  out->steps = (int)o->steps;
  out->warmup = (int)o->warmup;
  out->rounds = ROUNDS;
  out->max_seqs = max_seqs;
  out->max_step_tokens = STEP_TOKENS;
  out->n_plan = o->n_batches;
  tpd_engine_opts eo;
  tpd_engine_opts_init(&eo);
  eo.model_dir = dir;
  eo.backend = backend;
  eo.n_threads = (int)o->threads;
  eo.max_seqs = max_seqs;
  eo.max_ctx = max_ctx;
  eo.max_step_tokens = STEP_TOKENS;
  eo.device = -1;
  eo.kv_cache = o->kv_cache;
  eo.activations = o->activations;

  /* every mode's samples of every batch, the floor's; the prompts */
  const int cap = ROUNDS * (int)o->steps;
  samples spmd[BENCH_MAX_LIST], leader[BENCH_MAX_LIST];
  memset(spmd, 0, sizeof spmd);
  memset(leader, 0, sizeof leader);
  double *floor_t = malloc(sizeof(double) * ROUNDS * FLOOR_REPS);
  int32_t *prompts = malloc(sizeof(int32_t) * (size_t)max_seqs * (size_t)ctx);
  tpd_status st = floor_t && prompts ? TPD_OK : TPD_FAIL(TPD_ERR_OOM, "out of memory");
  for (int i = 0; i < o->n_batches && st == TPD_OK; i++) {
    st = samples_init(&spmd[i], cap);
    if (st == TPD_OK) st = samples_init(&leader[i], cap);
  }
  agree_or_die(comm, st);
  sctx x = {o, NULL, timed, prompts, ctx, (int)o->warmup, (int)o->steps};

  for (int round = 0; round < ROUNDS; round++) {
    const int last = round == ROUNDS - 1;
    /* ---- SPMD: every rank steps ---- */
    eo.mode = TPD_MODE_SPMD;
    tpd_engine *e = NULL;
    st = tpd_engine_create(&eo, timed, &e);
    if (st == TPD_OK && round == 0) {
      const tpd_model_config *c = tpd_engine_config(e);
      bench_fill_machine(&out->mach, o, e, nccl ? "nccl" : comm->ops->name, note);
      if (max_ctx > c->max_pos)
        st = TPD_FAIL(TPD_ERR_ARG, "--serve: --ctx %d and %ld + %ld steps need %d positions; the model has %d "
                      "(max_position_embeddings)", ctx, o->warmup, o->steps, max_ctx, c->max_pos);
      /* every sequence's prompt, the same on every rank: ids spread over the vocabulary */
      for (long i = 0; st == TPD_OK && i < (long)max_seqs * ctx; i++)
        prompts[i] = (int32_t)((7919u * (unsigned)(i / ctx + 1) + 104729u * (unsigned)(i % ctx)) % (unsigned)c->vocab);
    }
    agree_or_die(comm, st);
    x.e = e;
    for (int i = 0; i < o->n_batches && st == TPD_OK; i++) st = decode_block(&x, o->batches[i], &spmd[i]);
    tpd_engine_destroy(e);
    agree_or_die(comm, st);

    /* ---- the floor, all ranks ---- */
    agree_or_die(comm, timed_bcasts(timed, 8, floor_t + round * FLOOR_REPS));

    /* ---- leader mode: rank 0 steps, the others follow ---- */
    eo.mode = TPD_MODE_LEADER;
    e = NULL;
    st = tpd_engine_create(&eo, timed, &e);
    agree_or_die(comm, st);
    x.e = e;
    if (comm->rank == 0) {
      st = lead(&x, leader, last, max_tokens, out);
      tpd_error_state err; /* the failure's message outlives the shutdown */
      tpd_error_save(&err);
      const tpd_status sh = tpd_engine_usable(e) ? tpd_engine_shutdown(e) : TPD_OK;
      if (st != TPD_OK) tpd_error_restore(&err);
      else st = sh;
    } else {
      st = tpd_engine_follow(e);
    }
    tpd_engine_destroy(e);
    agree_or_die(comm, st);
  }
  if (comm->rank == 0) plan_rows(o, spmd, leader, floor_t, ROUNDS * FLOOR_REPS, out);
  /* the plan's size broadcast alone (every rank arriving together): what
   * the in-step broadcast costs beyond it is waiting for the followers */
  if (out->mach.tp > 1) {
    uint64_t plan_bytes = comm->rank == 0 ? (uint64_t)out->plan[0].plan_bytes : 0;
    agree_or_die(comm, comm->ops->host_broadcast(comm, &plan_bytes, sizeof plan_bytes, 0));
    if (plan_bytes > 0) {
      agree_or_die(comm, timed_bcasts(timed, (size_t)plan_bytes, floor_t));
      out->alone_us = tpd_percentile(floor_t, FLOOR_REPS, 50);
    }
  }
  for (int i = 0; i < o->n_batches; i++) free(spmd[i].ms), free(leader[i].ms);
  free(floor_t);
  free(prompts);
  timed->ops->destroy(timed);
  tpd_comm_destroy(nccl);
  return TPD_OK;
}

/* ------------------------------------------------------------------ */
/* output (rank 0)                                                       */

static void num_or_null(cJSON *j, const char *k, int have, double v) {
  if (have && isfinite(v)) cJSON_AddNumberToObject(j, k, v);
  else cJSON_AddNullToObject(j, k);
}

static void print_json(const bserve *s) {
  const bmachine *mc = &s->mach;
  for (int i = 0; i < s->n_plan; i++) {
    const bserve_plan_row *r = &s->plan[i];
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "kind", "serve_plan");
    cJSON_AddStringToObject(j, "backend", mc->backend);
    cJSON_AddStringToObject(j, "model", mc->model_name);
    cJSON_AddNumberToObject(j, "tp", r->tp);
    cJSON_AddNumberToObject(j, "batch", r->batch);
    cJSON_AddNumberToObject(j, "ctx", r->ctx);
    cJSON_AddNumberToObject(j, "steps", r->steps);
    cJSON_AddNumberToObject(j, "rounds", s->rounds);
    cJSON_AddNumberToObject(j, "max_seqs", s->max_seqs);
    cJSON_AddNumberToObject(j, "ms_per_step_spmd", r->spmd_ms);
    cJSON_AddNumberToObject(j, "ms_per_step_leader", r->leader_ms);
    cJSON_AddNumberToObject(j, "ms_leader_minus_spmd", r->diff_ms);
    cJSON_AddNumberToObject(j, "spmd_bcasts_per_step", r->spmd_bcasts);
    num_or_null(j, "bcast_us_per_step", r->have_bcast, r->bcast_us);
    num_or_null(j, "plan_size_bcast_alone_us", r->have_bcast && s->alone_us > 0, s->alone_us);
    num_or_null(j, "bcasts_per_step", r->have_bcast, r->bcasts_per_step);
    num_or_null(j, "plan_bytes", r->have_bcast, r->plan_bytes);
    num_or_null(j, "floor_us", r->have_bcast, s->floor_us);
    num_or_null(j, "bcast_over_floor", r->have_bcast, r->ratio);
    if (!r->have_bcast) cJSON_AddStringToObject(j, "bcast_reason", r->reason);
    if (r->fault[0]) cJSON_AddStringToObject(j, "fault", r->fault);
    else cJSON_AddNullToObject(j, "fault");
    char *t = cJSON_PrintUnformatted(j);
    if (t) printf("%s\n", t);
    free(t);
    cJSON_Delete(j);
  }
  for (int i = 0; i < s->n_sched; i++) {
    const bserve_sched_row *r = &s->sched[i];
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "kind", "serve_sched");
    cJSON_AddStringToObject(j, "backend", mc->backend);
    cJSON_AddStringToObject(j, "model", mc->model_name);
    cJSON_AddNumberToObject(j, "tp", r->tp);
    cJSON_AddNumberToObject(j, "batch", r->batch);
    cJSON_AddNumberToObject(j, "prompt", r->prompt);
    cJSON_AddNumberToObject(j, "steps", r->steps);
    cJSON_AddNumberToObject(j, "sched_us_per_step", r->sched_us);
    cJSON_AddNumberToObject(j, "engine_ms_per_step", r->engine_ms);
    num_or_null(j, "sched_over_engine", 1, r->ratio);
    cJSON_AddStringToObject(j, "floor", "the engine step");
    if (r->fault[0]) cJSON_AddStringToObject(j, "fault", r->fault);
    else cJSON_AddNullToObject(j, "fault");
    char *t = cJSON_PrintUnformatted(j);
    if (t) printf("%s\n", t);
    free(t);
    cJSON_Delete(j);
  }
}

void bench_print_serve(const bopts *o, const bserve *s) {
  if (o->json) {
    print_json(s);
    return;
  }
  const bmachine *mc = &s->mach;
  printf("%s --serve: %s, %.3g %s params (%s weights), TP=%d, %s/%s, %d thread%s per rank%s%s\n", BENCH_PROG,
         mc->model_name, mc->n_params >= 1e9 ? mc->n_params / 1e9 : mc->n_params / 1e6, mc->n_params >= 1e9 ? "B" : "M",
         tpd_dtype_name(mc->weight_dtype), mc->tp, mc->backend, mc->kernels, mc->threads, mc->threads == 1 ? "" : "s",
         mc->tp > 1 ? ", comm " : "", mc->tp > 1 ? mc->comm_name : "");
  if (mc->comm_note[0]) printf("comm: %s\n", mc->comm_note);
  printf("engine: max_seqs %d, max_step_tokens %d; prompts of %d tokens; %d timed steps after %d warm-up; medians\n",
         s->max_seqs, s->max_step_tokens, s->ctx, s->steps, s->warmup);
  printf("(a) plan broadcast: decode step on rank 0, SPMD vs leader mode, %d alternating rounds of each, steps\n"
         "    pooled; bcast = host time of the plan's host_broadcast on rank 0 (the root) per step; alone =\n"
         "    a broadcast of the plan's size with every rank arriving together (barrier before each), root's\n"
         "    median; floor = an 8-byte host_broadcast on the same communicator and path, root's median of %d\n"
         "    (barrier before each): %.3f us.  bcast/floor < 1 is a measurement fault\n",
         s->rounds, s->floor_reps, s->floor_us);
  printf("%3s %6s %12s %13s %9s %8s %8s %9s %9s %9s %9s\n", "tp", "batch", "SPMD ms/step", "leader ms/step",
         "diff ms", "bcasts", "plan B", "bcast us", "alone us", "floor us", "bcast/flr");
  int faults = 0;
  for (int i = 0; i < s->n_plan; i++) {
    const bserve_plan_row *r = &s->plan[i];
    if (r->have_bcast)
      printf("%3d %6d %12.4f %13.4f %9.4f %8.0f %8.0f %9.3f %9.3f %9.3f %9.2f%s%s\n", r->tp, r->batch, r->spmd_ms,
             r->leader_ms, r->diff_ms, r->bcasts_per_step, r->plan_bytes, r->bcast_us, s->alone_us, s->floor_us,
             r->ratio, r->fault[0] ? "  FAULT: " : "", r->fault);
    else
      printf("%3d %6d %12.4f %13.4f %9.4f %8s %8s %9s %9s %9s %9s  (%s)\n", r->tp, r->batch, r->spmd_ms,
             r->leader_ms, r->diff_ms, "n/a", "n/a", "n/a", "n/a", "n/a", "n/a", r->reason);
    faults += r->fault[0] != 0;
  }
  printf("(b) scheduler host time per step outside the engine (tpd_sched_last_step_times), leader mode, steady\n"
         "    greedy decode (ignore_eos); the floor here is the engine step itself: sched/engine is what the\n"
         "    scheduler adds\n");
  printf("%3s %6s %7s %9s %10s %12s\n", "tp", "batch", "prompt", "sched us", "engine ms", "sched/engine");
  for (int i = 0; i < s->n_sched; i++) {
    const bserve_sched_row *r = &s->sched[i];
    printf("%3d %6d %7d %9.3f %10.4f %12.5f%s%s\n", r->tp, r->batch, r->prompt, r->sched_us, r->engine_ms, r->ratio,
           r->fault[0] ? "  FAULT: " : "", r->fault);
    faults += r->fault[0] != 0;
  }
  if (faults) printf("%d row%s flagged as measurement faults (see FAULT)\n", faults, faults == 1 ? "" : "s");
}
