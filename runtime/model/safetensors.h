/* safetensors reader: single file or sharded (model.safetensors.index.json).
 *
 * Files are mapped read-only, without read-around; nothing is read until a
 * caller touches a tensor's bytes or prefetches them, so a rank that copies
 * only its slice reads only the pages of that slice (tests/loadio).
 * Every header is validated at open: JSON shape, dtype names, data_offsets
 * inside the file, byte counts matching shape x dtype, with the element and
 * byte counts checked for 64-bit overflow. */
#ifndef TPD_SAFETENSORS_H
#define TPD_SAFETENSORS_H

#include <stdint.h>

#include "runtime/base/dtype.h"
#include "runtime/base/error.h"

#ifdef __cplusplus
extern "C" {
#endif

#define TPD_ST_MAX_DIMS 8

typedef struct {
  char *name;
  int dtype;            /* a tpd_dtype, or -1 for a type the runtime does not compute in */
  char dtype_name[12];  /* as written in the header: "BF16", "I64", ... */
  int ndim;
  int64_t shape[TPD_ST_MAX_DIMS];
  int file;             /* index of the file holding it */
  uint64_t offset;      /* absolute byte offset in that file */
  uint64_t n_bytes;
} tpd_st_tensor;

typedef struct tpd_st tpd_st;

/* Opens <dir>/model.safetensors, or the shards listed by
 * <dir>/model.safetensors.index.json when that exists. */
tpd_status tpd_st_open(const char *dir, tpd_st **out);
/* Opens one file. */
tpd_status tpd_st_open_file(const char *path, tpd_st **out);
void tpd_st_close(tpd_st *st);

int tpd_st_count(const tpd_st *st);
const tpd_st_tensor *tpd_st_at(const tpd_st *st, int i);
const tpd_st_tensor *tpd_st_find(const tpd_st *st, const char *name);
/* The mapped bytes of a tensor (valid until tpd_st_close). */
const uint8_t *tpd_st_data(const tpd_st *st, const tpd_st_tensor *t);
/* Starts reading bytes [offset, offset + n_bytes) of a tensor from storage
 * (clipped to the tensor), and no more than the pages they cover: the
 * mapping has no read-around (MADV_RANDOM), so a rank reads only what it
 * asks for here and what it touches. */
void tpd_st_prefetch(const tpd_st *st, const tpd_st_tensor *t, uint64_t offset, uint64_t n_bytes);

/* Checks presence, supported dtype and exact shape of a tensor; messages
 * name the tensor and what was expected. ndim is 1 or 2. */
tpd_status tpd_st_expect(const tpd_st *st, const char *name, int ndim, int64_t d0, int64_t d1,
                         const tpd_st_tensor **out);

#ifdef __cplusplus
}
#endif
#endif
