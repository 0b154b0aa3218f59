/* Writes broken variants of a good checkpoint, for the bad-input tests. */
#ifndef TPD_BADFILES_H
#define TPD_BADFILES_H

/* kind: "truncated" (data cut short), "header-past-end" (header length
 * larger than the file), "offsets" (a tensor's data_offsets past the end),
 * "dtype" (a tensor stored as I32), "missing" (a tensor removed), "shape"
 * (a tensor's shape disagreeing with config.json), "heads" (config.json
 * with 3 attention heads: not divisible by TP = 2), "garbage-json"
 * (config.json not JSON).  Copies good_dir's files to out_dir with the
 * change.  Returns 0 on success. */
int tpd_make_bad(const char *good_dir, const char *out_dir, const char *kind, const char *tensor);

#endif
