/* ig_text: text files walked line by line, every byte accounted for (see ig_text.h). */
#include "ingest/ig_text.h"

#include "common/cm_file.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

size_t ig_utf8_seq(const unsigned char *s, size_t n)
{
    if (n == 0)
        return 0;
    unsigned c = s[0];
    if (c < 0x80)
        return 1;
    size_t len;
    unsigned lo = 0x80, hi = 0xbf; /* range of the second byte */
    if (c >= 0xc2 && c <= 0xdf)
        len = 2;
    else if (c >= 0xe0 && c <= 0xef) {
        len = 3;
        lo = c == 0xe0 ? 0xa0 : 0x80; /* overlong */
        hi = c == 0xed ? 0x9f : 0xbf; /* surrogates */
    } else if (c >= 0xf0 && c <= 0xf4) {
        len = 4;
        lo = c == 0xf0 ? 0x90 : 0x80; /* overlong */
        hi = c == 0xf4 ? 0x8f : 0xbf; /* over U+10FFFF */
    } else {
        return 0;
    }
    if (n < len || s[1] < lo || s[1] > hi)
        return 0;
    for (size_t i = 2; i < len; i++)
        if (s[i] < 0x80 || s[i] > 0xbf)
            return 0;
    return len;
}

char *ig_trim(char *s)
{
    while (*s == ' ' || *s == '\t')
        s++;
    size_t n = strlen(s);
    while (n && (s[n - 1] == ' ' || s[n - 1] == '\t'))
        s[--n] = '\0';
    return s;
}

int ig_lines_open(ig_lines *t, const char *path, size_t max, cm_err *err)
{
    memset(t, 0, sizeof *t);
    size_t n = 0;
    if (cm_read_regular(path, max, &t->text, &n, err) != 0) /* a FIFO or device refused, size bounded */
        return -1;
    t->len = n;
    if (n >= 3 && !memcmp(t->text, "\xef\xbb\xbf", 3))
        t->pos = 3;
    return 0;
}

/* NULL when s[0..n) is text (UTF-8, no control character but TAB), else the
 * reason in t->why and the offset of the first bad byte in *at. */
static const char *check_line(ig_lines *t, const unsigned char *s, size_t n, size_t *at)
{
    for (size_t i = 0; i < n;) {
        unsigned c = s[i];
        size_t l = 1;
        if (c == 0)
            snprintf(t->why, sizeof t->why, "NUL byte at column %zu", i + 1);
        else if ((c < 0x20 && c != '\t') || c == 0x7f)
            snprintf(t->why, sizeof t->why, "control character 0x%02x at column %zu", c, i + 1);
        else if (c >= 0x80 && !(l = ig_utf8_seq(s + i, n - i)))
            snprintf(t->why, sizeof t->why, "invalid UTF-8 (byte 0x%02x) at column %zu", c, i + 1);
        else {
            i += l;
            continue;
        }
        *at = i;
        return t->why;
    }
    return NULL;
}

static int is_blank(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (s[i] != ' ' && s[i] != '\t')
            return 0;
    return 1;
}

char *ig_lines_next(ig_lines *t)
{
    while (t->text && t->pos < t->len) {
        char *s = t->text + t->pos;
        char *nl = memchr(s, '\n', t->len - t->pos);
        size_t n = nl ? (size_t)(nl - s) : t->len - t->pos;
        t->pos += n + (nl != NULL);
        t->lineno++;
        if (n && s[n - 1] == '\r')
            n--;
        s[n] = '\0'; /* the LF, the CR or the added NUL */
        if (is_blank(s, n))
            continue;
        size_t at = 0;
        t->bad = check_line(t, (const unsigned char *)s, n, &at);
        if (t->bad)
            s[at] = '\0';
        return s;
    }
    return NULL;
}

void ig_lines_close(ig_lines *t)
{
    free(t->text);
    t->text = NULL;
}
