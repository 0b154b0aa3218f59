/* Leader/follower plan messages (plan_msg.h). */
#include "runtime/engine/plan_msg.h"

#include <string.h>

/* ops, items and tokens follow the head back to back (the ops padded to 8
 * bytes, which keeps the items' 8-byte fields aligned) */
static size_t off_items(int n_ops) { return sizeof(tpd_plan_head) + ((size_t)n_ops * sizeof(tpd_plan_op) + 7) / 8 * 8; }
static size_t off_tokens(int n_ops, int n_items) { return off_items(n_ops) + (size_t)n_items * sizeof(tpd_plan_item); }

size_t tpd_plan_cap(int max_ops, int max_items, int max_tokens) {
  return off_tokens(max_ops, max_items) + (size_t)max_tokens * sizeof(int32_t);
}

size_t tpd_plan_size(const tpd_plan_head *h) { return tpd_plan_cap(h->n_ops, h->n_items, h->n_tokens); }

tpd_status tpd_plan_encode(void *buf, size_t cap, int max_ops, int max_items, int max_tokens,
                           const tpd_plan_head *head, const tpd_plan_op *ops, const tpd_plan_item *items,
                           const int32_t *tokens, size_t *n_bytes) {
  if (cap < tpd_plan_cap(max_ops, max_items, max_tokens) || head->n_ops < 0 || head->n_ops > max_ops ||
      head->n_items < 0 || head->n_items > max_items || head->n_tokens < 0 || head->n_tokens > max_tokens)
    return TPD_FAIL(TPD_ERR_INTERNAL, "plan of %d ops, %d items, %d tokens exceeds its message (%d, %d, %d)",
                    head->n_ops, head->n_items, head->n_tokens, max_ops, max_items, max_tokens);
  uint8_t *b = buf;
  tpd_plan_head h = *head;
  h.magic = TPD_PLAN_MAGIC;
  h.version = TPD_PLAN_VERSION;
  memcpy(b, &h, sizeof h);
  if (h.n_ops) memcpy(b + sizeof h, ops, sizeof *ops * (size_t)h.n_ops);
  if (h.n_items) memcpy(b + off_items(h.n_ops), items, sizeof *items * (size_t)h.n_items);
  if (h.n_tokens) memcpy(b + off_tokens(h.n_ops, h.n_items), tokens, sizeof *tokens * (size_t)h.n_tokens);
  *n_bytes = tpd_plan_size(&h);
  return TPD_OK;
}

tpd_status tpd_plan_decode_head(const void *buf, int max_ops, int max_items, int max_tokens, tpd_plan_head *h) {
  memcpy(h, buf, sizeof *h);
  if (h->magic != TPD_PLAN_MAGIC) return TPD_FAIL(TPD_ERR_FORMAT, "plan message: bad magic 0x%08x", h->magic);
  if (h->version != TPD_PLAN_VERSION)
    return TPD_FAIL(TPD_ERR_FORMAT, "plan message version %u; this build speaks %d", h->version, TPD_PLAN_VERSION);
  if (h->kind < TPD_PLAN_STEP || h->kind > TPD_PLAN_SHUTDOWN)
    return TPD_FAIL(TPD_ERR_FORMAT, "plan message: unknown kind %u", h->kind);
  if (h->n_ops < 0 || h->n_ops > max_ops || h->n_items < 0 || h->n_items > max_items || h->n_tokens < 0 ||
      h->n_tokens > max_tokens)
    return TPD_FAIL(TPD_ERR_FORMAT, "plan message: %d ops, %d items, %d tokens exceed (%d, %d, %d)", h->n_ops,
                    h->n_items, h->n_tokens, max_ops, max_items, max_tokens);
  return TPD_OK;
}

tpd_status tpd_plan_decode(const void *buf, int max_ops, int max_items, int max_tokens, tpd_plan_view *out) {
  const uint8_t *b = buf;
  TPD_TRY(tpd_plan_decode_head(buf, max_ops, max_items, max_tokens, &out->head));
  const tpd_plan_head *h = &out->head;
  out->ops = (const tpd_plan_op *)(b + sizeof *h);
  out->items = (const tpd_plan_item *)(b + off_items(h->n_ops));
  out->tokens = (const int32_t *)(b + off_tokens(h->n_ops, h->n_items));
  int64_t sum = 0;
  for (int i = 0; i < h->n_items; i++) {
    const tpd_plan_item *it = &out->items[i];
    if (it->n_tokens < 1 || it->pos < 0)
      return TPD_FAIL(TPD_ERR_FORMAT, "plan message: item %d has %d tokens at %d", i, it->n_tokens, it->pos);
    sum += it->n_tokens;
  }
  if (sum != h->n_tokens)
    return TPD_FAIL(TPD_ERR_FORMAT, "plan message: items hold %lld tokens, the head says %d", (long long)sum, h->n_tokens);
  return TPD_OK;
}
