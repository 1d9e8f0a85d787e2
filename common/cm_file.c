#include "common/cm_file.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

int cm_tmp_path(char *out, size_t n, const char *final_path, cm_err *err)
{
    const char *slash = strrchr(final_path, '/');
    int dirlen = slash ? (int)(slash - final_path + 1) : 0;
    const char *base = slash ? slash + 1 : final_path;
    int w = snprintf(out, n, "%.*s.%s.tmp.XXXXXX", dirlen, final_path, base);
    if (w < 0 || (size_t)w >= n)
        return cm_err_set(err, "%s: path too long", final_path);
    int fd = mkstemp(out);
    if (fd < 0)
        return cm_err_set(err, "%s: cannot create: %s", final_path, strerror(errno));
    /* mkstemp makes the file private (0600); outputs are ordinary files. */
    fchmod(fd, 0644);
    close(fd);
    return 0;
}

static int fsync_path(const char *path)
{
    int fd = open(path, O_RDONLY);
    if (fd < 0)
        return -1;
    int rc = fsync(fd);
    close(fd);
    return rc;
}

int cm_remove_stale_tmp(const char *final_path, cm_err *err)
{
    const char *slash = strrchr(final_path, '/');
    char dir[CM_PATH_MAX], prefix[CM_PATH_MAX];
    snprintf(dir, sizeof dir, "%.*s", slash ? (int)(slash - final_path) : 1, slash ? final_path : ".");
    snprintf(prefix, sizeof prefix, ".%s.tmp.", slash ? slash + 1 : final_path);
    DIR *d = opendir(dir[0] ? dir : "/");
    if (!d)
        return cm_err_set(err, "%s: %s", dir, strerror(errno));
    size_t np = strlen(prefix);
    int removed = 0, rc = 0;
    struct dirent *e;
    while (rc == 0 && (e = readdir(d))) {
        const char *tail = e->d_name + np;
        if (strncmp(e->d_name, prefix, np) != 0 || strlen(tail) != 6)
            continue;
        int ok = 1;
        for (int k = 0; k < 6; k++)
            ok &= isalnum((unsigned char)tail[k]) != 0;
        char path[CM_PATH_MAX];
        int w = snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        ok &= w > 0 && (size_t)w < sizeof path;
        if (ok && unlink(path) != 0)
            rc = cm_err_set(err, "%s: %s", path, strerror(errno));
        removed += ok;
    }
    closedir(d);
    return rc ? rc : removed;
}

int cm_rename_commit(const char *tmp_path, const char *final_path, cm_err *err)
{
    if (fsync_path(tmp_path) != 0) {
        int e = errno;
        unlink(tmp_path);
        return cm_err_set(err, "%s: cannot sync: %s", final_path, strerror(e));
    }
    if (rename(tmp_path, final_path) != 0) {
        int e = errno;
        unlink(tmp_path);
        return cm_err_set(err, "%s: cannot rename into place: %s", final_path, strerror(e));
    }
    return 0;
}

int cm_atomic_open(cm_atomic *a, const char *final_path, cm_err *err)
{
    memset(a, 0, sizeof *a);
    if (strlen(final_path) >= sizeof a->final_path)
        return cm_err_set(err, "%s: path too long", final_path);
    strcpy(a->final_path, final_path);
    if (cm_tmp_path(a->tmp_path, sizeof a->tmp_path, final_path, err) != 0)
        return -1;
    a->fp = fopen(a->tmp_path, "wb");
    if (!a->fp) {
        int e = errno;
        unlink(a->tmp_path);
        return cm_err_set(err, "%s: cannot create: %s", final_path, strerror(e));
    }
    return 0;
}

int cm_atomic_commit(cm_atomic *a, cm_err *err)
{
    if (!a->fp)
        return cm_err_set(err, "%s: not open", a->final_path);
    int bad = ferror(a->fp) || fflush(a->fp) != 0 || fsync(fileno(a->fp)) != 0;
    int e = errno;
    if (fclose(a->fp) != 0 && !bad) {
        bad = 1;
        e = errno;
    }
    a->fp = NULL;
    if (bad) {
        unlink(a->tmp_path);
        return cm_err_set(err, "%s: write failed: %s", a->final_path, strerror(e));
    }
    if (rename(a->tmp_path, a->final_path) != 0) {
        e = errno;
        unlink(a->tmp_path);
        return cm_err_set(err, "%s: cannot rename into place: %s", a->final_path, strerror(e));
    }
    return 0;
}

void cm_atomic_abort(cm_atomic *a)
{
    if (a->fp) {
        fclose(a->fp);
        a->fp = NULL;
    }
    if (a->tmp_path[0])
        unlink(a->tmp_path);
}

int cm_write_file_atomic(const char *final_path, const void *data, size_t n, cm_err *err)
{
    cm_atomic a;
    if (cm_atomic_open(&a, final_path, err) != 0)
        return -1;
    if (n && fwrite(data, 1, n, a.fp) != n) {
        int e = errno;
        cm_atomic_abort(&a);
        return cm_err_set(err, "%s: write failed: %s", final_path, strerror(e));
    }
    return cm_atomic_commit(&a, err);
}

/* Opens path for reading without blocking (a FIFO would wait for a writer
 * forever) and checks it is a regular file; the fd, or -1 with err set. */
static int open_regular(const char *path, struct stat *st, cm_err *err)
{
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0)
        return cm_err_set(err, "%s: %s", path, strerror(errno)), -1;
    if (fstat(fd, st) != 0) {
        cm_err_set(err, "%s: %s", path, strerror(errno));
        close(fd);
        return -1;
    }
    if (!S_ISREG(st->st_mode)) {
        cm_err_set(err, "%s: not a regular file (%s)", path,
                   S_ISDIR(st->st_mode) ? "a directory" : S_ISFIFO(st->st_mode) ? "a FIFO" :
                   S_ISCHR(st->st_mode) || S_ISBLK(st->st_mode) ? "a device" : S_ISSOCK(st->st_mode) ? "a socket" :
                   "not a plain file");
        close(fd);
        return -1;
    }
    return fd;
}

int cm_check_regular(const char *path, cm_err *err)
{
    struct stat st;
    cm_err e;
    if (lstat(path, &st) != 0 && errno == ENOENT)
        return cm_err_set(err, "no such file");
    int fd = open_regular(path, &st, &e);
    if (fd < 0) { /* the same reason without the path: the caller names the file */
        size_t n = strlen(path);
        const char *why = !strncmp(e.msg, path, n) && !strncmp(e.msg + n, ": ", 2) ? e.msg + n + 2 : e.msg;
        return cm_err_set(err, "%s", why);
    }
    close(fd);
    return 0;
}

int cm_read_regular(const char *path, size_t max_bytes, char **data, size_t *n, cm_err *err)
{
    *data = NULL;
    *n = 0;
    struct stat st;
    int fd = open_regular(path, &st, err);
    if (fd < 0)
        return -1;
    if ((uint64_t)st.st_size > (uint64_t)max_bytes) {
        close(fd);
        return cm_err_set(err, "%s: %lld bytes, more than the %zu this file may hold", path, (long long)st.st_size,
                          max_bytes);
    }
    /* Read at most max_bytes + 1: a file that grows past its limit while read is refused too. */
    size_t cap = (size_t)st.st_size + 1, len = 0;
    char *buf = malloc(cap + 1);
    if (!buf) {
        close(fd);
        return cm_err_set(err, "%s: out of memory", path);
    }
    for (;;) {
        ssize_t r = read(fd, buf + len, cap - len);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            int e = errno;
            free(buf);
            close(fd);
            return cm_err_set(err, "%s: read failed: %s", path, strerror(e));
        }
        if (r == 0)
            break;
        len += (size_t)r;
        if (len > max_bytes) {
            free(buf);
            close(fd);
            return cm_err_set(err, "%s: grew past the %zu bytes this file may hold while read", path, max_bytes);
        }
        if (len == cap) {
            size_t nc = cap * 2 > max_bytes + 1 ? max_bytes + 1 : cap * 2;
            char *nb = nc > cap ? realloc(buf, nc + 1) : NULL;
            if (!nb) {
                free(buf);
                close(fd);
                return cm_err_set(err, "%s: out of memory", path);
            }
            buf = nb;
            cap = nc;
        }
    }
    close(fd);
    buf[len] = '\0';
    *data = buf;
    *n = len;
    return 0;
}

int cm_read_file(const char *path, char **data, size_t *n, cm_err *err)
{
    return cm_read_regular(path, CM_READ_MAX, data, n, err);
}

int cm_mkdirs(const char *path, cm_err *err)
{
    char buf[CM_PATH_MAX];
    size_t len = strlen(path);
    if (len == 0 || len >= sizeof buf)
        return cm_err_set(err, "%s: bad folder path", path);
    memcpy(buf, path, len + 1);
    for (char *p = buf + 1; ; p++) {
        if (*p == '/' || *p == '\0') {
            char c = *p;
            *p = '\0';
            if (mkdir(buf, 0777) != 0 && errno != EEXIST)
                return cm_err_set(err, "%s: cannot create folder: %s", buf, strerror(errno));
            if (!cm_is_dir(buf))
                return cm_err_set(err, "%s: exists and is not a folder", buf);
            *p = c;
            if (c == '\0')
                break;
        }
    }
    return 0;
}

int cm_is_file(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

int cm_is_dir(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

void cm_basename_noext(char *out, size_t n, const char *path)
{
    const char *slash = strrchr(path, '/');
    const char *base = slash ? slash + 1 : path;
    const char *dot = strrchr(base, '.');
    size_t len = dot && dot != base ? (size_t)(dot - base) : strlen(base);
    if (n == 0)
        return;
    if (len >= n)
        len = n - 1;
    memcpy(out, base, len);
    out[len] = '\0';
}

int cm_has_suffix(const char *path, const char *suffix)
{
    size_t a = strlen(path), b = strlen(suffix);
    return a >= b && strcasecmp(path + a - b, suffix) == 0;
}
