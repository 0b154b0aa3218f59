/* Fuzz target: the CLI's token-id list (launch/cli.c, tpd_cli_ids: the
 * value of --prompt-ids, "1,2,3").  On success: every id non-negative, and
 * the count equals the number of comma-separated fields; printing the ids
 * back and parsing that gives the same ids. */
#include "launch/cli.h"
#include "tests/fuzz/fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char *s = fz_cstr(data, size);
  int32_t *ids = NULL;
  const char *err = NULL;
  const int n = tpd_cli_ids(s, &ids, &err);
  if (n < 0) {
    FZ_CHECK(ids == NULL, "ids on failure");
    FZ_CHECK(err && err[0] && !strchr(err, '\n'), "error message");
    free(s);
    return 0;
  }
  FZ_CHECK(n > 0 && ids != NULL, "n %d", n);
  int fields = 1;
  for (const char *p = s; *p; p++) fields += *p == ',';
  if (s[0] && s[strlen(s) - 1] == ',') fields--; /* "1,2," : a trailing comma ends the list */
  FZ_CHECK(n == fields, "%d ids from %d fields", n, fields);
  char *back = malloc((size_t)n * 12 + 1), *w = back;
  FZ_CHECK(back != NULL, "out of memory");
  for (int i = 0; i < n; i++) {
    FZ_CHECK(ids[i] >= 0, "id %d is %d", i, ids[i]);
    w += sprintf(w, "%s%d", i ? "," : "", ids[i]);
  }
  int32_t *again = NULL;
  FZ_CHECK(tpd_cli_ids(back, &again, &err) == n, "reparse of %s", back);
  FZ_CHECK(memcmp(again, ids, sizeof *ids * (size_t)n) == 0, "reparse differs");
  free(again);
  free(back);
  free(ids);
  free(s);
  return 0;
}
