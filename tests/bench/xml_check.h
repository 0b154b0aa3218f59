/* A small XML well-formedness check for the tests (the SVG the bench
 * writes): one root element, every tag closed in order, attribute values
 * quoted, only the five predefined entities or character references, no
 * stray '<' or '&' in text.  Returns 0 when well-formed, else writes why. */
#ifndef TPD_TEST_XML_CHECK_H
#define TPD_TEST_XML_CHECK_H

#include <ctype.h>
#include <stdio.h>
#include <string.h>

static int xml_name_char(char c) { return isalnum((unsigned char)c) || c == '-' || c == '_' || c == ':' || c == '.'; }

static int xml_entity(const char **pp) {
  const char *p = *pp; /* at '&' */
  static const char *ents[] = {"&amp;", "&lt;", "&gt;", "&quot;", "&apos;"};
  for (int i = 0; i < 5; i++)
    if (!strncmp(p, ents[i], strlen(ents[i]))) {
      *pp = p + strlen(ents[i]);
      return 1;
    }
  if (p[1] == '#') {
    const char *q = p + 2;
    if (*q == 'x') q++;
    const char *d = q;
    while (isxdigit((unsigned char)*q)) q++;
    if (q > d && *q == ';') {
      *pp = q + 1;
      return 1;
    }
  }
  return 0;
}

static int xml_check(const char *s, char *why, size_t cap) {
  char stack[64][64];
  int depth = 0, roots = 0;
  const char *p = s;
  if (!strncmp(p, "<?xml", 5)) {
    p = strstr(p, "?>");
    if (!p) return snprintf(why, cap, "unterminated XML declaration"), 1;
    p += 2;
  }
  while (*p) {
    if (*p == '<') {
      if (!strncmp(p, "<!--", 4)) {
        const char *e = strstr(p, "-->");
        if (!e) return snprintf(why, cap, "unterminated comment"), 1;
        p = e + 3;
        continue;
      }
      const int closing = p[1] == '/';
      p += closing ? 2 : 1;
      const char *n0 = p;
      while (xml_name_char(*p)) p++;
      const size_t nl = (size_t)(p - n0);
      if (nl == 0 || nl >= 64) return snprintf(why, cap, "bad tag name near '%.20s'", n0), 1;
      if (closing) {
        while (isspace((unsigned char)*p)) p++;
        if (*p != '>') return snprintf(why, cap, "bad closing tag </%.*s", (int)nl, n0), 1;
        if (depth == 0 || strlen(stack[depth - 1]) != nl || strncmp(stack[depth - 1], n0, nl))
          return snprintf(why, cap, "</%.*s> does not close <%s>", (int)nl, n0, depth ? stack[depth - 1] : "(none)"), 1;
        depth--;
        p++;
        continue;
      }
      /* attributes */
      for (;;) {
        while (isspace((unsigned char)*p)) p++;
        if (*p == '>' || (*p == '/' && p[1] == '>')) break;
        const char *a0 = p;
        while (xml_name_char(*p)) p++;
        if (p == a0) return snprintf(why, cap, "bad attribute in <%.*s> near '%.20s'", (int)nl, n0, p), 1;
        while (isspace((unsigned char)*p)) p++;
        if (*p != '=') return snprintf(why, cap, "attribute without value in <%.*s>", (int)nl, n0), 1;
        p++;
        while (isspace((unsigned char)*p)) p++;
        const char q = *p;
        if (q != '"' && q != '\'') return snprintf(why, cap, "unquoted attribute in <%.*s>", (int)nl, n0), 1;
        p++;
        while (*p && *p != q) {
          if (*p == '<') return snprintf(why, cap, "'<' inside an attribute of <%.*s>", (int)nl, n0), 1;
          if (*p == '&' && !xml_entity(&p)) return snprintf(why, cap, "bad entity in an attribute"), 1;
          else if (*p != '&' && *p != q) p++;
        }
        if (*p != q) return snprintf(why, cap, "unterminated attribute value"), 1;
        p++;
      }
      if (depth == 0 && ++roots > 1) return snprintf(why, cap, "more than one root element"), 1;
      if (*p == '/') {
        p += 2;
        continue;
      }
      if (depth == 64) return snprintf(why, cap, "nesting too deep"), 1;
      snprintf(stack[depth++], 64, "%.*s", (int)nl, n0);
      p++;
      continue;
    }
    if (*p == '&') {
      if (!xml_entity(&p)) return snprintf(why, cap, "bad entity near '%.20s'", p), 1;
      continue;
    }
    if (depth == 0 && !isspace((unsigned char)*p)) return snprintf(why, cap, "text outside the root element"), 1;
    p++;
  }
  if (depth) return snprintf(why, cap, "<%s> is never closed", stack[depth - 1]), 1;
  if (roots != 1) return snprintf(why, cap, "no root element"), 1;
  return 0;
}

#endif
