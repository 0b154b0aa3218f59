/* Small file helpers with tpd_status errors that name the path. */
#ifndef TPD_FILEIO_H
#define TPD_FILEIO_H

#include <stddef.h>

#include "runtime/base/error.h"

/* Reads a whole file into a NUL-terminated malloc'd buffer. */
tpd_status tpd_read_text_file(const char *path, char **out, size_t *n_bytes);
/* Writes n_bytes to path (truncating). */
tpd_status tpd_write_file(const char *path, const void *data, size_t n_bytes);
int tpd_path_exists(const char *path);
int tpd_is_dir(const char *path);

#endif
