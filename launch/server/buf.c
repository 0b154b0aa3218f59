/* tpdecode-server: the growing byte buffer the other parts write into
 * (request bodies, SSE chunks, response and metrics text). */
#include <stdlib.h>
#include <string.h>

#include "launch/server/server.h"

int srv_buf_add(srv_buf *b, const char *s, size_t n) {
  if (b->len + n + 1 > b->cap) {
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + n + 1)
      cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p)
      return -1;
    b->p = p, b->cap = cap;
  }
  memcpy(b->p + b->len, s, n);
  b->len += n;
  b->p[b->len] = 0;
  return 0;
}

void srv_buf_free(srv_buf *b) {
  free(b->p);
  memset(b, 0, sizeof *b);
}
