/* Writes broken variants of a good checkpoint, for the bad-input tests,
 * and small file helpers those tests share. */
#ifndef TPD_BADFILES_H
#define TPD_BADFILES_H

#include <stddef.h>

/* kind: "truncated" (data cut short), "header-past-end" (header length
 * larger than the file), "offsets" (a tensor's data_offsets past the end),
 * "dtype" (a tensor stored as I32), "missing" (a tensor removed), "shape"
 * (a tensor's shape disagreeing with config.json), "heads" (config.json
 * with 3 attention heads: not divisible by TP = 2), "garbage-json"
 * (config.json not JSON).  Copies good_dir's files to out_dir with the
 * change.  Returns 0 on success. */
int tpd_make_bad(const char *good_dir, const char *out_dir, const char *kind, const char *tensor);

/* Writes a safetensors file with the given header text (padded to 8 bytes)
 * followed by n_data bytes of data.  Returns 0 on success. */
int tpd_write_st_file(const char *path, const char *header, const void *data, size_t n_data);

/* Copies one file.  Returns 0 on success. */
int tpd_copy_file(const char *src, const char *dst);

/* Sends stderr to `path` until tpd_stderr_restore(the returned handle);
 * returns -1 on failure.  For tests that check what a call warns. */
int tpd_stderr_to_file(const char *path);
void tpd_stderr_restore(int handle);

#endif
