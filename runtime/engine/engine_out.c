/* The end of a forward: every rank's record gathered in one collective,
 * the agreed status, and the outputs (tokens, log-probabilities) computed
 * from the vocab-parallel LM head without gathering full logits unless a
 * row samples (or the caller asked for the logits).
 *
 * A rank's record: a head (status and the first failure's message), then
 * per output row its local argmax (value, index); with log-probabilities
 * its (max, sum of exp) and local top k (values, indices); when a row
 * samples, its whole local logit slice.  The layout follows from the plan,
 * so it is the same on every rank. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "runtime/engine/engine_internal.h"

typedef struct {
  int32_t status;
  int32_t pad;
  char msg[TPD_POISON_MSG];
} rec_head;

/* offsets of the parts of a record, and its size */
typedef struct {
  size_t val, idx, max, sum, topv, topi, logits, bytes;
} rec_layout;

static size_t al8(size_t n) { return (n + 7) / 8 * 8; }

static rec_layout layout(const tpd_engine *e, int n, int lp_k, int need_full) {
  const size_t k = lp_k > 0 ? (size_t)lp_k : 0, lp = lp_k >= 0, N = (size_t)n;
  rec_layout L;
  L.val = al8(sizeof(rec_head));
  L.idx = L.val + al8(4 * N);
  L.max = L.idx + al8(4 * N);
  L.sum = L.max + (lp ? al8(4 * N) : 0);
  L.topv = L.sum + (lp ? al8(4 * N) : 0);
  L.topi = L.topv + al8(4 * N * k);
  L.logits = L.topi + al8(4 * N * k);
  L.bytes = L.logits + (need_full ? 4 * N * (size_t)e->plan.vocab_chunk : 0);
  return L;
}

size_t tpd_eng_rec_cap(const tpd_engine *e) { return layout(e, e->max_seqs, TPD_LOGIT_TOPK_MAX, 1).bytes; }

static void download(tpd_engine *e, void *dst, const void *src, size_t n_bytes) {
  if (e->poison == TPD_OK && n_bytes) tpd_eng_poison(e, e->be->ops->download(e->be, dst, src, n_bytes));
}

/* This rank's record (downloads skipped once poisoned; the head always). */
static void fill_record(tpd_engine *e, const rec_layout *L, int n, int lp_k, int need_full) {
  uint8_t *r = e->h_rec;
  const size_t N = (size_t)n, k = lp_k > 0 ? (size_t)lp_k : 0;
  download(e, r + L->val, e->amax_val, 4 * N);
  download(e, r + L->idx, e->amax_idx, 4 * N);
  if (lp_k >= 0) {
    download(e, r + L->max, e->st_max, 4 * N);
    download(e, r + L->sum, e->st_sum, 4 * N);
    download(e, r + L->topv, e->st_topv, 4 * N * k); /* [n, k] rows of k */
    download(e, r + L->topi, e->st_topi, 4 * N * k);
  }
  if (need_full) /* local slices at a stride of vocab_chunk (the last rank's may be shorter) */
    for (int i = 0; i < n; i++)
      download(e, r + L->logits + 4 * (size_t)i * e->plan.vocab_chunk, e->logits + (size_t)i * e->V_l,
               4 * (size_t)e->V_l);
  rec_head h = {.status = (int32_t)e->poison};
  if (e->poison != TPD_OK) snprintf(h.msg, sizeof h.msg, "%s", e->poison_msg);
  memcpy(r, &h, sizeof h);
}

static int fatal(tpd_status s) {
  return s == TPD_ERR_DEVICE || s == TPD_ERR_COMM || s == TPD_ERR_OOM || s == TPD_ERR_INTERNAL ||
         s == TPD_ERR_FORMAT;
}

/* The lowest rank's failure, or TPD_OK; sets the message on every rank. */
static tpd_status agree(tpd_engine *e, const rec_layout *L) {
  const tpd_status mine = e->poison;
  e->poison = TPD_OK;
  for (int r = 0; r < e->plan.tp; r++) {
    rec_head h;
    memcpy(&h, (const uint8_t *)e->h_rec_all + (size_t)r * L->bytes, sizeof h);
    if (h.status == TPD_OK) continue;
    const tpd_status s = (tpd_status)h.status;
    h.msg[sizeof h.msg - 1] = 0;
    if (r != e->comm->rank || mine == TPD_OK) TPD_FAIL(s, "rank %d failed the step: %s", r, h.msg);
    /* else: this rank's own message stands */
    if (fatal(s)) {
      e->unusable = 1;
      TPD_WARN("the engine is unusable after rank %d's failure (%s)", r, tpd_status_name(s));
    }
    return s;
  }
  return TPD_OK;
}

/* log_softmax over the vocabulary of row i from every rank's (max, sum) */
static double row_lse(const tpd_engine *e, const rec_layout *L, int i) {
  double M = -INFINITY;
  for (int r = 0; r < e->plan.tp; r++) {
    const float *mx = (const float *)((const uint8_t *)e->h_rec_all + (size_t)r * L->bytes + L->max);
    if (mx[i] > M) M = mx[i];
  }
  if (!(M > -INFINITY)) return M; /* NaN, or every logit -inf */
  double S = 0;
  for (int r = 0; r < e->plan.tp; r++) {
    const uint8_t *rec = (const uint8_t *)e->h_rec_all + (size_t)r * L->bytes;
    const float mx = ((const float *)(rec + L->max))[i], sm = ((const float *)(rec + L->sum))[i];
    if (mx > -INFINITY) S += (double)sm * exp((double)mx - M);
  }
  return M + log(S);
}

/* (v, id) comes before (bv, bi): larger value first, equal values by lower id */
static int before(float v, int32_t id, float bv, int32_t bi) { return v > bv || (v == bv && id < bi); }

/* The k most likely tokens of row i, merged from every rank's local top
 * list (stride entries per row, sorted): k rounds, each taking the best
 * candidate after the previous one in that order. */
static void row_top(const tpd_engine *e, const rec_layout *L, int i, int stride, int k, double lse,
                    tpd_step_output *o) {
  o->n_top = 0;
  float pv = INFINITY;
  int32_t pi = -1;
  for (int j = 0; j < k; j++) {
    int found = 0;
    float bv = 0;
    int32_t bi = 0;
    for (int r = 0; r < e->plan.tp; r++) {
      const uint8_t *rec = (const uint8_t *)e->h_rec_all + (size_t)r * L->bytes;
      const float *tv = (const float *)(rec + L->topv) + (size_t)i * stride;
      const int32_t *ti = (const int32_t *)(rec + L->topi) + (size_t)i * stride;
      for (int c = 0; c < k; c++) {
        if (ti[c] < 0) break; /* past the end of a short slice */
        if (j > 0 && !before(pv, pi, tv[c], ti[c])) continue; /* taken already */
        if (!found || before(tv[c], ti[c], bv, bi)) found = 1, bv = tv[c], bi = ti[c];
      }
    }
    if (!found) break;
    o->top_ids[o->n_top] = bi;
    o->top_logprobs[o->n_top] = (float)((double)bv - lse);
    o->n_top++;
    pv = bv, pi = bi;
  }
}

tpd_status tpd_eng_finish(tpd_engine *e, const tpd_plan_item *items, int n_last, int lp_k, int need_full,
                          const int32_t *orig, tpd_step_output *out, float *out_logits) {
  const rec_layout L = layout(e, n_last, lp_k, need_full);
  fill_record(e, &L, n_last, lp_k, need_full);
  const tpd_status g = e->comm->ops->host_allgather(e->comm, e->h_rec, e->h_rec_all, L.bytes);
  if (g != TPD_OK) { /* no agreement is possible: the engine is done for */
    e->unusable = 1;
    e->poison = TPD_OK;
    return g;
  }
  TPD_TRY(agree(e, &L));
  const int tp = e->plan.tp, chunk = e->plan.vocab_chunk, V = e->cfg.vocab;
  const uint8_t *all = e->h_rec_all;
  for (int i = 0; i < n_last; i++) {
    const int it = e->h_last_item[i];
    const tpd_plan_item *item = &items[it];
    tpd_step_output *o = &out[orig[it]];
    o->logprob = NAN;
    o->n_top = 0;
    const tpd_sampling smp = {item->temperature, item->top_k, item->top_p, item->seed};
    if (need_full) {
      for (int r = 0; r < tp; r++) {
        const int v0 = r * chunk, n = v0 + chunk <= V ? chunk : V - v0;
        if (n > 0)
          memcpy(e->h_full + v0, all + (size_t)r * L.bytes + L.logits + 4 * (size_t)i * chunk, sizeof(float) * (size_t)n);
      }
      const uint64_t counter = (uint64_t)(item->pos + item->n_tokens);
      TPD_TRY(tpd_sample(e->h_full, V, &smp, item->stream, counter, &e->ss, &o->token));
      if (out_logits) memcpy(out_logits + (size_t)orig[it] * V, e->h_full, sizeof(float) * (size_t)V);
    }
    float best_v = 0;
    if (!need_full || tpd_sampling_is_greedy(&smp)) { /* every rank's (max, argmax): the first maximum wins */
      int32_t best_i = -1;
      for (int r = 0; r < tp; r++) {
        const float v = ((const float *)(all + (size_t)r * L.bytes + L.val))[i];
        const int32_t id = ((const int32_t *)(all + (size_t)r * L.bytes + L.idx))[i];
        if (best_i < 0 || v > best_v || (v == best_v && id < best_i)) best_v = v, best_i = id;
      }
      if (!need_full) o->token = best_i;
    } else {
      best_v = e->h_full[o->token];
    }
    if (item->logprobs > 0 && lp_k >= 0) {
      const double lse = row_lse(e, &L, i);
      const float lt = need_full ? e->h_full[o->token] : best_v;
      o->logprob = (float)((double)lt - lse);
      if (item->logprobs > 1) row_top(e, &L, i, lp_k, item->logprobs - 1, lse, o);
    }
  }
  return TPD_OK;
}
