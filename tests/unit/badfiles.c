#include "badfiles.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

static int read_all(const char *path, unsigned char **buf, size_t *n) {
  FILE *f = fopen(path, "rb");
  if (!f) return -1;
  fseek(f, 0, SEEK_END);
  long len = ftell(f);
  rewind(f);
  *buf = malloc((size_t)len + 1);
  *n = fread(*buf, 1, (size_t)len, f);
  fclose(f);
  (*buf)[*n] = 0;
  return *n == (size_t)len ? 0 : -1;
}

static int write_all(const char *path, const void *a, size_t na, const void *b, size_t nb) {
  FILE *f = fopen(path, "wb");
  if (!f) return -1;
  int ok = fwrite(a, 1, na, f) == na && (nb == 0 || fwrite(b, 1, nb, f) == nb);
  return fclose(f) == 0 && ok ? 0 : -1;
}

int tpd_make_bad(const char *good, const char *out, const char *kind, const char *tensor) {
  char src[4096], dst[4096];
  if (mkdir(out, 0755) != 0 && errno != EEXIST) return -1;
  unsigned char *cfg = NULL, *st = NULL;
  size_t ncfg = 0, nst = 0;
  snprintf(src, sizeof src, "%s/config.json", good);
  if (read_all(src, &cfg, &ncfg)) return -1;
  snprintf(src, sizeof src, "%s/model.safetensors", good);
  if (read_all(src, &st, &nst)) return -1;
  snprintf(dst, sizeof dst, "%s/config.json", out);
  int rc = 0;
  if (!strcmp(kind, "garbage-json")) {
    rc = write_all(dst, "{\"model_type\": \"llama\", ", 24, NULL, 0);
  } else if (!strcmp(kind, "heads")) {
    cJSON *c = cJSON_Parse((char *)cfg);
    cJSON_ReplaceItemInObject(c, "num_attention_heads", cJSON_CreateNumber(3));
    cJSON_ReplaceItemInObject(c, "num_key_value_heads", cJSON_CreateNumber(3));
    if (cJSON_GetObjectItem(c, "head_dim")) cJSON_ReplaceItemInObject(c, "head_dim", cJSON_CreateNumber(16));
    else cJSON_AddNumberToObject(c, "head_dim", 16);
    char *t = cJSON_Print(c);
    rc = write_all(dst, t, strlen(t), NULL, 0);
    free(t);
    cJSON_Delete(c);
  } else {
    rc = write_all(dst, cfg, ncfg, NULL, 0);
  }
  snprintf(dst, sizeof dst, "%s/model.safetensors", out);
  uint64_t hlen = 0;
  for (int i = 0; i < 8; i++) hlen |= (uint64_t)st[i] << (8 * i);
  const size_t data = 8 + (size_t)hlen;
  if (!strcmp(kind, "truncated")) {
    rc |= write_all(dst, st, data + (nst - data) / 2, NULL, 0);
  } else if (!strcmp(kind, "header-past-end")) {
    unsigned char h[8];
    uint64_t big = nst + 1000;
    for (int i = 0; i < 8; i++) h[i] = (unsigned char)(big >> (8 * i));
    rc |= write_all(dst, h, 8, st + 8, nst - 8);
  } else if (!strcmp(kind, "offsets") || !strcmp(kind, "dtype") || !strcmp(kind, "missing") ||
             !strcmp(kind, "shape")) {
    cJSON *h = cJSON_ParseWithLength((const char *)st + 8, (size_t)hlen);
    cJSON *e = cJSON_GetObjectItemCaseSensitive(h, tensor);
    if (!e) return -1;
    if (!strcmp(kind, "offsets")) {
      cJSON *o = cJSON_GetObjectItemCaseSensitive(e, "data_offsets");
      double end = (double)(nst - data) + 4096;
      cJSON_ReplaceItemInArray(o, 1, cJSON_CreateNumber(end));
    } else if (!strcmp(kind, "dtype")) {
      /* same byte size as F32 / half of it for 16-bit types: I32 or I16 */
      cJSON *d = cJSON_GetObjectItemCaseSensitive(e, "dtype");
      const char *now = d->valuestring;
      cJSON_ReplaceItemInObject(e, "dtype", cJSON_CreateString(!strcmp(now, "F32") ? "I32" : "I16"));
    } else if (!strcmp(kind, "missing")) {
      cJSON_DeleteItemFromObject(h, tensor);
    } else { /* shape: swap the two dimensions' roles by halving one and doubling the other */
      cJSON *s = cJSON_GetObjectItemCaseSensitive(e, "shape");
      double d0 = cJSON_GetArrayItem(s, 0)->valuedouble, d1 = cJSON_GetArraySize(s) > 1 ? cJSON_GetArrayItem(s, 1)->valuedouble : 1;
      cJSON_ReplaceItemInArray(s, 0, cJSON_CreateNumber(d0 * 2));
      if (cJSON_GetArraySize(s) > 1) cJSON_ReplaceItemInArray(s, 1, cJSON_CreateNumber(d1 / 2));
      else cJSON_ReplaceItemInArray(s, 0, cJSON_CreateNumber(d0 / 2));
    }
    char *t = cJSON_PrintUnformatted(h);
    size_t n = strlen(t), pad = (n + 7) / 8 * 8;
    unsigned char *hdr = malloc(8 + pad);
    for (int i = 0; i < 8; i++) hdr[i] = (unsigned char)((uint64_t)pad >> (8 * i));
    memcpy(hdr + 8, t, n);
    memset(hdr + 8 + n, ' ', pad - n);
    rc |= write_all(dst, hdr, 8 + pad, st + data, nst - data);
    free(hdr);
    free(t);
    cJSON_Delete(h);
  } else {
    rc |= write_all(dst, st, nst, NULL, 0);
  }
  free(cfg);
  free(st);
  return rc;
}

int tpd_write_st_file(const char *path, const char *header, const void *data, size_t n_data) {
  const size_t n = strlen(header), pad = (n + 7) / 8 * 8;
  unsigned char *buf = malloc(8 + pad);
  if (!buf) return -1;
  for (int i = 0; i < 8; i++) buf[i] = (unsigned char)((uint64_t)pad >> (8 * i));
  memcpy(buf + 8, header, n);
  memset(buf + 8 + n, ' ', pad - n);
  const int rc = write_all(path, buf, 8 + pad, data, n_data);
  free(buf);
  return rc;
}

int tpd_copy_file(const char *src, const char *dst) {
  unsigned char *buf = NULL;
  size_t n = 0;
  int rc = read_all(src, &buf, &n);
  if (rc == 0) rc = write_all(dst, buf, n, NULL, 0);
  free(buf);
  return rc;
}

int tpd_stderr_to_file(const char *path) {
  fflush(stderr);
  const int saved = dup(2);
  const int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (saved < 0 || fd < 0 || dup2(fd, 2) < 0) {
    if (fd >= 0) close(fd);
    if (saved >= 0) close(saved);
    return -1;
  }
  close(fd);
  return saved;
}

void tpd_stderr_restore(int handle) {
  if (handle < 0) return;
  fflush(stderr);
  dup2(handle, 2);
  close(handle);
}
