/* SPDX-License-Identifier: Apache-2.0 */
/* What CRIU wrote about a failure: Error lines of its log file. */
#include <ctype.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>

#include "criu/criu-internal.h"

#define LINE_MAX_QUOTED 300 /* characters kept of one log line */

/* Skips "(00.012345)" and the restore task prefix "     1: ". */
static const char *skip_prefixes(const char *p)
{
        if (*p == '(') {
                const char *close = strchr(p, ')');

                if (!close)
                        return p;
                p = close + 1;
        }
        while (*p == ' ' || *p == '\t')
                p++;
        if (isdigit((unsigned char)*p)) {
                const char *q = p;

                while (isdigit((unsigned char)*q))
                        q++;
                if (*q == ':') {
                        p = q + 1;
                        while (*p == ' ' || *p == '\t')
                                p++;
                }
        }
        return p;
}

bool kyb_criu_is_error_line(const char *line)
{
        const char *p = skip_prefixes(line);

        /* pr_err: "Error (file:line): msg"; BUG_ON reports as an Error too. */
        return !strncmp(p, "Error (", 7) || !strncmp(p, "Error:", 6);
}

/* A ring of the last `max` Error lines. */
typedef struct err_ring {
        char (*line)[LINE_MAX_QUOTED + 1];
        size_t max, n, next;
} err_ring;

static void ring_push(err_ring *r, const char *s, size_t len)
{
        while (len && isspace((unsigned char)s[len - 1]))
                len--;
        len = KYB_MIN(len, (size_t)LINE_MAX_QUOTED);
        memcpy(r->line[r->next], s, len);
        r->line[r->next][len] = '\0';
        r->next = (r->next + 1) % r->max;
        if (r->n < r->max)
                r->n++;
}

static char *ring_join(const err_ring *r)
{
        size_t cap = r->n * (LINE_MAX_QUOTED + 2) + 1, pos = 0;
        size_t first = (r->next + r->max - r->n) % r->max;
        char *out;

        if (r->n == 0)
                return NULL;
        out = malloc(cap);
        if (!out)
                return NULL;
        out[0] = '\0';
        for (size_t i = 0; i < r->n; i++)
                pos += (size_t)snprintf(out + pos, cap - pos, "%s%s", i ? "; " : "",
                                        r->line[(first + i) % r->max]);
        return out;
}

static bool ring_init(err_ring *r, size_t max)
{
        *r = (err_ring){.max = max ? max : 1};
        r->line = calloc(r->max, sizeof(*r->line));
        return r->line != NULL;
}

char *kyb_criu_text_errors(const char *text, size_t len, size_t max)
{
        const char *end = text + len, *p = text;
        _cleanup_free_ char *line = NULL;
        err_ring r;
        char *out;

        if (!ring_init(&r, max))
                return NULL;
        while (p < end) {
                const char *nl = memchr(p, '\n', (size_t)(end - p));
                size_t n = nl ? (size_t)(nl - p) : (size_t)(end - p);

                free(line);
                line = strndup(p, n);
                if (line && kyb_criu_is_error_line(line))
                        ring_push(&r, line, n);
                p += n + 1;
        }
        out = ring_join(&r);
        free(r.line);
        return out;
}

static void file_errors(FILE *f, size_t max, char **out)
{
        _cleanup_free_ char *line = NULL;
        size_t cap = 0;
        ssize_t n;
        err_ring r;

        if (!ring_init(&r, max))
                return;
        /* The log can be megabytes at -v4: stream it, keep only the ring. */
        while ((n = getline(&line, &cap, f)) >= 0)
                if (kyb_criu_is_error_line(line))
                        ring_push(&r, line, (size_t)n);
        *out = ring_join(&r);
        free(r.line);
}

void kyb_criu_log_errors(int dir_fd, const char *name, size_t max, char **out)
{
        int fd;
        FILE *f;

        *out = NULL;
        if (dir_fd < 0 || !name)
                return;
        fd = openat(dir_fd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        if (fd < 0)
                return;
        f = fdopen(fd, "r");
        if (!f) {
                close(fd);
                return;
        }
        file_errors(f, max, out);
        fclose(f);
}

/* The last few non-empty lines of swrk's own output, one line. */
static char *stderr_summary(const char *text)
{
        _cleanup_free_ char *errs = NULL;
        size_t len;

        if (!text || !text[0])
                return NULL;
        len = strlen(text);
        errs = kyb_criu_text_errors(text, len, KYB_CRIU_LOG_ERROR_LINES);
        if (errs)
                return TAKE_PTR(errs);
        while (len && isspace((unsigned char)text[len - 1]))
                len--;
        if (len == 0)
                return NULL;
        /* No Error lines: quote its end, newlines folded. */
        {
                size_t start = len > LINE_MAX_QUOTED ? len - LINE_MAX_QUOTED : 0;
                char *s = strndup(text + start, len - start);

                for (char *c = s; c && *c; c++)
                        if (*c == '\n')
                                *c = ' ';
                return s;
        }
}

/* cr_errmsg is CRIU's first error line as logged, newline included. */
static char *trimmed(const char *s)
{
        size_t len;

        if (!s)
                return NULL;
        while (isspace((unsigned char)*s))
                s++;
        len = strlen(s);
        while (len && isspace((unsigned char)s[len - 1]))
                len--;
        return len ? strndup(s, len) : NULL;
}

int kyb_criu_fail(kyb_error **err, int errnum, const char *ctx, const char *cr_errmsg_raw,
                  const char *log_lines, const char *stderr_text)
{
        _cleanup_free_ char *tail = NULL;
        _cleanup_free_ char *cr_errmsg = trimmed(cr_errmsg_raw);
        bool errmsg_new = cr_errmsg && !(log_lines && strstr(log_lines, cr_errmsg));

        if (errnum <= 0)
                errnum = EIO;
        if (log_lines && errmsg_new)
                return kyb_error_setf(err, errnum, "%s: %s (first error: %s)", ctx, log_lines,
                                      cr_errmsg);
        if (log_lines)
                return kyb_error_setf(err, errnum, "%s: %s", ctx, log_lines);
        tail = stderr_summary(stderr_text);
        if (errmsg_new && tail)
                return kyb_error_setf(err, errnum, "%s: %s; criu: %s", ctx, cr_errmsg, tail);
        if (errmsg_new)
                return kyb_error_setf(err, errnum, "%s: %s", ctx, cr_errmsg);
        if (tail)
                return kyb_error_setf(err, errnum, "%s: criu: %s", ctx, tail);
        return kyb_error_setf(err, errnum, "%s: failed without a reason in its log", ctx);
}
