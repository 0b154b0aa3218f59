/* The leader's plan: what followers run next, one message per forward.
 *
 *   head   magic "TPDP", version, kind, flags, counts, sequence number
 *   ops    n_ops x {op, a, b}: opens, closes and option changes made on the
 *          leader since the previous plan, in the order they were made
 *   items  n_items x {slot, pos, n_tokens, flags, logprobs, sampling, stream}:
 *          the tokens [pos, pos + n_tokens) of each sequence in this forward
 *   tokens n_tokens int32 ids, the items' tokens one after the other
 *
 * The parts follow each other; a plan of B sequences with one token each
 * is 32 + 52 B bytes (plus 12 per op).  It is broadcast from rank 0 as its
 * first TPD_PLAN_PREFIX bytes (a size every rank knows: decode plans up to
 * batch 18 fit), then, only when it is longer, the rest in a second
 * broadcast whose size the head gives.  A step longer
 * than one forward is several plans, the last flagged TPD_PLAN_LAST: the
 * step's tokens count as cached only after it.  Native byte order: every
 * rank of a TP group runs the same build.  Not part of the public API. */
#ifndef TPD_PLAN_MSG_H
#define TPD_PLAN_MSG_H

#include <stddef.h>
#include <stdint.h>

#include "runtime/base/error.h"

#define TPD_PLAN_MAGIC 0x50445054u /* "TPDP" little-endian */
#define TPD_PLAN_VERSION 1
#define TPD_PLAN_PREFIX 1024 /* bytes of every plan's first broadcast */

enum { TPD_PLAN_STEP = 1, TPD_PLAN_SYNC = 2, TPD_PLAN_SHUTDOWN = 3 };
enum { TPD_PLAN_LAST = 1 };                                    /* head.flags: last forward of its step */
enum { TPD_PLAN_OP_OPEN = 1, TPD_PLAN_OP_CLOSE = 2, TPD_PLAN_OP_OPTION = 3 };
enum { TPD_PLAN_ITEM_OUTPUT = 1 };                             /* item.flags: sample after its last token */

typedef struct {
  uint32_t magic;
  uint16_t version, kind;
  uint32_t flags;
  int32_t n_ops, n_items, n_tokens;
  uint64_t seq; /* plans sent so far: a follower that misses one fails */
} tpd_plan_head;

typedef struct {
  int32_t op, a, b; /* OPEN slot; CLOSE slot; OPTION option value */
} tpd_plan_op;

typedef struct {
  int32_t slot, pos, n_tokens;
  uint32_t flags;
  int32_t logprobs, top_k;
  float temperature, top_p;
  uint64_t seed, stream;
} tpd_plan_item;

/* A decoded plan: pointers into the message. */
typedef struct {
  tpd_plan_head head;
  const tpd_plan_op *ops;
  const tpd_plan_item *items;
  const int32_t *tokens;
} tpd_plan_view;

/* Bytes of a message holding up to max_ops ops, max_items items and
 * max_tokens tokens (the buffer to allocate; at least TPD_PLAN_PREFIX is
 * the caller's to ensure). */
size_t tpd_plan_cap(int max_ops, int max_items, int max_tokens);
/* Bytes of the plan a head describes. */
size_t tpd_plan_size(const tpd_plan_head *h);

/* Writes a plan into buf (cap bytes) and its size into *n_bytes; counts
 * beyond the caps it was sized for are TPD_ERR_INTERNAL. */
tpd_status tpd_plan_encode(void *buf, size_t cap, int max_ops, int max_items, int max_tokens,
                           const tpd_plan_head *head, const tpd_plan_op *ops, const tpd_plan_item *items,
                           const int32_t *tokens, size_t *n_bytes);
/* Checks a head: magic, version, kind, the counts against the caps; any
 * mismatch is TPD_ERR_FORMAT naming it. */
tpd_status tpd_plan_decode_head(const void *buf, int max_ops, int max_items, int max_tokens, tpd_plan_head *h);
/* The whole plan (all tpd_plan_size bytes in buf): the head, and the tokens
 * against the items. */
tpd_status tpd_plan_decode(const void *buf, int max_ops, int max_items, int max_tokens, tpd_plan_view *out);

#endif
