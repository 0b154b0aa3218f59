#include "ref_model.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/model/safetensors.h"

typedef struct {
  double *ln1, *ln2, *wq, *wk, *wv, *wo, *bq, *bk, *bv, *bo, *wg, *wu, *wd, *bg, *bu, *bd;
} ref_layer;

struct ref_model {
  tpd_model_config c;
  double *emb, *norm, *lm;
  ref_layer *L;
  double *inv_freq;
  int kv_bf16;  /* ref_set_kv_bf16 */
  int act_bf16; /* ref_set_act_bf16 */
};

void ref_set_kv_bf16(ref_model *m, int on) { m->kv_bf16 = on != 0; }

static double bf16_round(double x) { return tpd_bf16_to_f32(tpd_f32_to_bf16((float)x)); }

void ref_set_act_bf16(ref_model *m, int on) { m->act_bf16 = on != 0; }

/* a matmul's input, as the bf16-activation matmuls see it */
static void act_round(const ref_model *m, double *x, int n) {
  for (int i = 0; m->act_bf16 && i < n; i++) x[i] = bf16_round(x[i]);
}

static double *read_tensor(tpd_st *st, const char *name, size_t n_expect) {
  const tpd_st_tensor *t = tpd_st_find(st, name);
  if (!t || t->dtype < 0) return NULL;
  size_t n = t->n_bytes / tpd_dtype_size((tpd_dtype)t->dtype);
  if (n != n_expect) return NULL;
  double *d = malloc(sizeof(double) * n);
  const uint8_t *src = tpd_st_data(st, t);
  for (size_t i = 0; i < n; i++) d[i] = tpd_load_f32(src, (tpd_dtype)t->dtype, i);
  return d;
}

static double *read_layer(tpd_st *st, int l, const char *what, size_t n) {
  char name[256];
  snprintf(name, sizeof name, "model.layers.%d.%s", l, what);
  return read_tensor(st, name, n);
}

/* Hugging Face rotary frequencies, with llama3 rope_scaling (written from
 * the published formula, independently of runtime/model/config.c). */
static void inv_freqs(const tpd_model_config *c, double *f) {
  const int d = c->head_dim;
  for (int i = 0; i < d / 2; i++) {
    double base = pow(c->rope_theta, -(double)(2 * i) / d);
    if (c->rope_llama3) {
      const double wl = 2 * M_PI / base;
      const double lo = c->rope_orig_max_pos / c->rope_low_freq_factor;
      const double hi = c->rope_orig_max_pos / c->rope_high_freq_factor;
      if (wl < hi) {
        /* high frequency: unchanged */
      } else if (wl > lo) {
        base /= c->rope_factor;
      } else {
        const double sm = (c->rope_orig_max_pos / wl - c->rope_low_freq_factor) /
                          (c->rope_high_freq_factor - c->rope_low_freq_factor);
        base = (1 - sm) * base / c->rope_factor + sm * base;
      }
    }
    f[i] = base;
  }
}

int ref_load(const char *dir, ref_model **out) {
  ref_model *m = calloc(1, sizeof *m);
  tpd_st *st = NULL;
  if (tpd_config_load(dir, &m->c) != TPD_OK || tpd_st_open(dir, &st) != TPD_OK) {
    free(m);
    return -1;
  }
  const tpd_model_config *c = &m->c;
  const size_t D = c->dim, Q = (size_t)c->n_heads * c->head_dim, KV = (size_t)c->n_kv_heads * c->head_dim,
               F = c->ffn_dim, V = c->vocab;
  m->emb = read_tensor(st, "model.embed_tokens.weight", V * D);
  m->norm = read_tensor(st, "model.norm.weight", D);
  m->lm = read_tensor(st, c->tie_embeddings ? "model.embed_tokens.weight" : "lm_head.weight", V * D);
  int ok = m->emb && m->norm && m->lm;
  m->L = calloc((size_t)c->n_layers, sizeof *m->L);
  for (int l = 0; ok && l < c->n_layers; l++) {
    ref_layer *L = &m->L[l];
    L->ln1 = read_layer(st, l, "input_layernorm.weight", D);
    L->ln2 = read_layer(st, l, "post_attention_layernorm.weight", D);
    L->wq = read_layer(st, l, "self_attn.q_proj.weight", Q * D);
    L->wk = read_layer(st, l, "self_attn.k_proj.weight", KV * D);
    L->wv = read_layer(st, l, "self_attn.v_proj.weight", KV * D);
    L->wo = read_layer(st, l, "self_attn.o_proj.weight", D * Q);
    L->wg = read_layer(st, l, "mlp.gate_proj.weight", F * D);
    L->wu = read_layer(st, l, "mlp.up_proj.weight", F * D);
    L->wd = read_layer(st, l, "mlp.down_proj.weight", D * F);
    ok = L->ln1 && L->ln2 && L->wq && L->wk && L->wv && L->wo && L->wg && L->wu && L->wd;
    if (c->qkv_bias) {
      L->bq = read_layer(st, l, "self_attn.q_proj.bias", Q);
      L->bk = read_layer(st, l, "self_attn.k_proj.bias", KV);
      L->bv = read_layer(st, l, "self_attn.v_proj.bias", KV);
      ok = ok && L->bq && L->bk && L->bv;
    }
    if (c->o_bias) ok = ok && (L->bo = read_layer(st, l, "self_attn.o_proj.bias", D));
    if (c->mlp_bias) {
      L->bg = read_layer(st, l, "mlp.gate_proj.bias", F);
      L->bu = read_layer(st, l, "mlp.up_proj.bias", F);
      L->bd = read_layer(st, l, "mlp.down_proj.bias", D);
      ok = ok && L->bg && L->bu && L->bd;
    }
  }
  m->inv_freq = malloc(sizeof(double) * (size_t)(c->head_dim / 2));
  inv_freqs(c, m->inv_freq);
  tpd_st_close(st);
  if (!ok) {
    ref_free(m);
    return -1;
  }
  *out = m;
  return 0;
}

void ref_free(ref_model *m) {
  if (!m) return;
  for (int l = 0; m->L && l < m->c.n_layers; l++) {
    double **p = (double **)&m->L[l];
    for (size_t i = 0; i < sizeof(ref_layer) / sizeof(double *); i++) free(p[i]);
  }
  free(m->L);
  free(m->emb);
  free(m->norm);
  free(m->lm);
  free(m->inv_freq);
  free(m);
}

const tpd_model_config *ref_config(const ref_model *m) { return &m->c; }

/* y[n] = W[n, k] x[k] + b */
static void linear(const double *W, const double *b, const double *x, int n, int k, double *y) {
  for (int i = 0; i < n; i++) {
    double s = b ? b[i] : 0.0;
    for (int j = 0; j < k; j++) s += W[(size_t)i * k + j] * x[j];
    y[i] = s;
  }
}

static void rmsnorm(const double *x, const double *w, int n, double eps, double *y) {
  double ss = 0;
  for (int i = 0; i < n; i++) ss += x[i] * x[i];
  const double r = 1.0 / sqrt(ss / n + eps);
  for (int i = 0; i < n; i++) y[i] = x[i] * r * w[i];
}

static void rope(double *v, int d, int pos, const double *f) {
  for (int i = 0; i < d / 2; i++) {
    const double c = cos(pos * f[i]), s = sin(pos * f[i]);
    const double a = v[i], b = v[i + d / 2];
    v[i] = a * c - b * s;
    v[i + d / 2] = b * c + a * s;
  }
}

void ref_forward(const ref_model *m, const int *tok, int n, double *logits) {
  const tpd_model_config *c = &m->c;
  const int D = c->dim, Dh = c->head_dim, Hq = c->n_heads, Hkv = c->n_kv_heads, F = c->ffn_dim;
  const int Q = Hq * Dh, KV = Hkv * Dh;
  double *x = malloc(sizeof(double) * (size_t)n * D), *h = malloc(sizeof(double) * D);
  double *q = malloc(sizeof(double) * (size_t)n * Q), *k = malloc(sizeof(double) * (size_t)n * KV);
  double *v = malloc(sizeof(double) * (size_t)n * KV), *att = malloc(sizeof(double) * Q);
  double *o = malloc(sizeof(double) * D), *g = malloc(sizeof(double) * F), *u = malloc(sizeof(double) * F);
  double *sc = malloc(sizeof(double) * (size_t)n);
  for (int t = 0; t < n; t++) memcpy(x + (size_t)t * D, m->emb + (size_t)tok[t] * D, sizeof(double) * D);
  for (int l = 0; l < c->n_layers; l++) {
    const ref_layer *L = &m->L[l];
    for (int t = 0; t < n; t++) {
      rmsnorm(x + (size_t)t * D, L->ln1, D, c->norm_eps, h);
      act_round(m, h, D);
      linear(L->wq, L->bq, h, Q, D, q + (size_t)t * Q);
      linear(L->wk, L->bk, h, KV, D, k + (size_t)t * KV);
      linear(L->wv, L->bv, h, KV, D, v + (size_t)t * KV);
      for (int hh = 0; hh < Hq; hh++) rope(q + (size_t)t * Q + hh * Dh, Dh, t, m->inv_freq);
      for (int hh = 0; hh < Hkv; hh++) rope(k + (size_t)t * KV + hh * Dh, Dh, t, m->inv_freq);
      for (int i = 0; m->kv_bf16 && i < KV; i++) {
        k[(size_t)t * KV + i] = bf16_round(k[(size_t)t * KV + i]);
        v[(size_t)t * KV + i] = bf16_round(v[(size_t)t * KV + i]);
      }
    }
    for (int t = 0; t < n; t++) {
      const int start = c->sliding_window > 0 && t - c->sliding_window + 1 > 0 ? t - c->sliding_window + 1 : 0;
      for (int hh = 0; hh < Hq; hh++) {
        const int kh = hh / (Hq / Hkv);
        double mx = -INFINITY;
        for (int p = start; p <= t; p++) {
          double s = 0;
          for (int i = 0; i < Dh; i++) s += q[(size_t)t * Q + hh * Dh + i] * k[(size_t)p * KV + kh * Dh + i];
          sc[p] = s / sqrt((double)Dh);
          if (sc[p] > mx) mx = sc[p];
        }
        double z = 0;
        for (int p = start; p <= t; p++) z += (sc[p] = exp(sc[p] - mx));
        for (int i = 0; i < Dh; i++) {
          double a = 0;
          for (int p = start; p <= t; p++) a += sc[p] * v[(size_t)p * KV + kh * Dh + i];
          att[hh * Dh + i] = a / z;
        }
      }
      act_round(m, att, Q);
      linear(L->wo, L->bo, att, D, Q, o);
      double *xt = x + (size_t)t * D;
      for (int i = 0; i < D; i++) xt[i] += o[i];
      rmsnorm(xt, L->ln2, D, c->norm_eps, h);
      act_round(m, h, D);
      linear(L->wg, L->bg, h, F, D, g);
      linear(L->wu, L->bu, h, F, D, u);
      for (int i = 0; i < F; i++) g[i] = g[i] / (1 + exp(-g[i])) * u[i];
      act_round(m, g, F);
      linear(L->wd, L->bd, g, D, F, o);
      for (int i = 0; i < D; i++) xt[i] += o[i];
    }
  }
  rmsnorm(x + (size_t)(n - 1) * D, m->norm, D, c->norm_eps, h);
  act_round(m, h, D);
  linear(m->lm, NULL, h, c->vocab, D, logits);
  free(x), free(h), free(q), free(k), free(v), free(att), free(o), free(g), free(u), free(sc);
}

void ref_greedy(const ref_model *m, const int *prompt, int n_prompt, int n_new, int *out, double *last_logits) {
  const int V = m->c.vocab;
  int *seq = malloc(sizeof(int) * (size_t)(n_prompt + n_new));
  double *lg = malloc(sizeof(double) * (size_t)V);
  memcpy(seq, prompt, sizeof(int) * (size_t)n_prompt);
  for (int s = 0; s < n_new; s++) {
    ref_forward(m, seq, n_prompt + s, lg);
    int best = 0, finite = 1;
    for (int i = 0; i < V; i++) finite &= isfinite(lg[i]) != 0;
    for (int i = 1; i < V; i++)
      if (lg[i] > lg[best]) best = i;
    if (!finite) { /* no token: -1 matches no engine id, so a comparison fails */
      for (int k = s; k < n_new; k++) out[k] = -1;
      break;
    }
    out[s] = best;
    seq[n_prompt + s] = best;
  }
  if (last_logits) memcpy(last_logits, lg, sizeof(double) * (size_t)V);
  free(seq);
  free(lg);
}

double ref_greedy_gap(const double *lg, int V, int id) {
  double mx = -INFINITY, amax = 0;
  int finite = 1;
  for (int i = 0; i < V; i++) {
    finite &= isfinite(lg[i]) != 0;
    if (lg[i] > mx) mx = lg[i];
    if (fabs(lg[i]) > amax) amax = fabs(lg[i]);
  }
  return finite && id >= 0 && id < V && amax > 0 ? (mx - lg[id]) / amax : NAN;
}

int ref_check_greedy(const ref_model *m, const int *prompt, int n_prompt, const int *got, int n_new, double tol,
                     double *worst_gap) {
  const int V = m->c.vocab;
  int *seq = malloc(sizeof(int) * (size_t)(n_prompt + n_new));
  double *lg = malloc(sizeof(double) * (size_t)V);
  int bad = seq && lg ? -1 : 0;
  *worst_gap = 0;
  if (seq) memcpy(seq, prompt, sizeof(int) * (size_t)n_prompt);
  for (int s = 0; s < n_new && bad < 0; s++) {
    ref_forward(m, seq, n_prompt + s, lg);
    const double gap = ref_greedy_gap(lg, V, got[s]);
    if (!(gap <= tol)) bad = s;
    if (!(gap <= *worst_gap)) *worst_gap = gap;
    seq[n_prompt + s] = got[s];
  }
  free(seq);
  free(lg);
  return bad;
}
