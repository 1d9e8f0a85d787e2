/* ig_text: annotation, class and preset files read whole and walked line by
 * line, every byte accounted for: a line that is not text (a NUL byte, a
 * control character other than TAB, invalid UTF-8) is returned flagged, never
 * dropped and never allowed to hide the lines after it. */
#ifndef IG_TEXT_H
#define IG_TEXT_H

#include <stddef.h>

#include "common/cm_err.h"

#define IG_ANNOTATION_MAX ((size_t)1 << 30) /* bytes of one annotation file */

typedef struct ig_lines {
    char *text;      /* the whole file + a NUL (it may hold NUL bytes of its own) */
    size_t len, pos; /* bytes in text (without the added NUL), where the next line starts */
    int lineno;      /* 1-based number of the line last returned, blank ones counted */
    const char *bad; /* NULL, or why the line last returned is not text ("NUL byte at column 7") */
    char why[64];
} ig_lines;

/* Reads `path` whole: opened without blocking (a FIFO is refused, never waited
 * on), a regular file of at most `max` bytes. A UTF-8 byte order mark at the
 * start is skipped. 0, or -1 naming the file and the cause. */
int ig_lines_open(ig_lines *t, const char *path, size_t max, cm_err *err);
/* The next line that is not blank (only spaces and tabs), without its LF or
 * CRLF, or NULL at the end. When t->bad is set the line is cut at its first
 * bad byte (the text before it is valid UTF-8). */
char *ig_lines_next(ig_lines *t);
void ig_lines_close(ig_lines *t);

/* Length of the valid UTF-8 sequence at s (at most n bytes: no overlong form,
 * surrogate or code point over U+10FFFF), or 0 when there is none. */
size_t ig_utf8_seq(const unsigned char *s, size_t n);
/* s with leading and trailing spaces and tabs removed (in place). */
char *ig_trim(char *s);

#endif
