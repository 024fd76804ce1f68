/* SPDX-License-Identifier: Apache-2.0 */
#include <arpa/inet.h>
#include <ctype.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "base/macro.h"
#include "fake-s3.h"

#define HEADER_MAX (64 << 10)

typedef struct conn {
        fake_s3 *f;
        int fd;
        char *buf; /* bytes read but not consumed */
        size_t len;
        size_t cap;
} conn;

/* What a request gets back. */
typedef struct reply {
        int status;
        char headers[1024];
        unsigned char *body; /* owned */
        size_t body_len;
        bool no_body;  /* HEAD: headers only */
        bool drop;     /* close without answering */
        size_t cut_at; /* send this much of the body, then close (0: all) */
} reply;

static void *xrealloc(void *p, size_t n)
{
        p = realloc(p, n ? n : 1);
        assert_non_null(p);
        return p;
}

static char *xstrndup(const char *s, size_t n)
{
        char *d = strndup(s, n);

        assert_non_null(d);
        return d;
}

static bool fill(conn *c)
{
        ssize_t n;

        if (c->len == c->cap) {
                c->cap = c->cap ? 2 * c->cap : 65536;
                c->buf = xrealloc(c->buf, c->cap);
        }
        n = recv(c->fd, c->buf + c->len, c->cap - c->len, 0);
        if (n <= 0)
                return false;
        c->len += (size_t)n;
        return true;
}

static void consume(conn *c, size_t n)
{
        memmove(c->buf, c->buf + n, c->len - n);
        c->len -= n;
}

static bool send_all(int fd, const void *data, size_t len)
{
        const char *p = data;

        while (len > 0) {
                ssize_t n = send(fd, p, len, MSG_NOSIGNAL);

                if (n <= 0)
                        return false;
                p += n;
                len -= (size_t)n;
        }
        return true;
}

const char *fs3_header(const fs3_request *r, const char *name, char *buf, size_t cap)
{
        size_t n = strlen(name);

        for (const char *l = r->headers; l && *l;) {
                const char *end = strstr(l, "\r\n");
                size_t len = end ? (size_t)(end - l) : strlen(l);

                if (len > n && !strncasecmp(l, name, n) && l[n] == ':') {
                        const char *v = l + n + 1;

                        while (*v == ' ')
                                v++;
                        snprintf(buf, cap, "%.*s", (int)(len - (size_t)(v - l)), v);
                        return buf;
                }
                l = end ? end + 2 : l + len;
        }
        return NULL;
}

/* Reads one request: false at the end of the connection. */
static bool read_request(conn *c, fs3_request *r)
{
        char *end, *line_end, *sp1, *sp2, *q, val[64];
        size_t head_len, want;

        while (!(end = c->len ? memmem(c->buf, c->len, "\r\n\r\n", 4) : NULL))
                if (c->len > HEADER_MAX || !fill(c))
                        return false;
        head_len = (size_t)(end - c->buf) + 4;
        line_end = memmem(c->buf, head_len, "\r\n", 2);
        sp1 = memchr(c->buf, ' ', (size_t)(line_end - c->buf));
        sp2 = sp1 ? memchr(sp1 + 1, ' ', (size_t)(line_end - sp1 - 1)) : NULL;
        assert_non_null(sp2);
        snprintf(r->method, sizeof(r->method), "%.*s", (int)(sp1 - c->buf), c->buf);
        q = memchr(sp1 + 1, '?', (size_t)(sp2 - sp1 - 1));
        r->path = xstrndup(sp1 + 1, (size_t)((q ? q : sp2) - sp1 - 1));
        r->query = q ? xstrndup(q + 1, (size_t)(sp2 - q - 1)) : xstrndup("", 0);
        r->headers = xstrndup(line_end + 2, head_len - (size_t)(line_end + 2 - c->buf) - 2);
        consume(c, head_len);
        want = fs3_header(r, "Content-Length", val, sizeof(val)) ? strtoull(val, NULL, 10) : 0;
        if (fs3_header(r, "Expect", val, sizeof(val)) && !strcasecmp(val, "100-continue"))
                send_all(c->fd, "HTTP/1.1 100 Continue\r\n\r\n", 25);
        while (c->len < want)
                if (!fill(c))
                        return false;
        r->body = xrealloc(NULL, want);
        memcpy(r->body, c->buf, want);
        r->body_len = want;
        consume(c, want);
        return true;
}

static void md5_hex(const void *data, size_t len, char out[33])
{
        unsigned char md[16];
        unsigned int n = 0;

        EVP_Digest(data, len, md, &n, EVP_md5(), NULL);
        for (int i = 0; i < 16; i++)
                sprintf(out + 2 * i, "%02x", md[i]);
}

static char *decode(const char *s)
{
        char *d = xstrndup(s, strlen(s));
        size_t j = 0;

        for (size_t i = 0; s[i]; i++) {
                unsigned v;

                if (s[i] == '%' && sscanf(s + i + 1, "%2x", &v) == 1) {
                        d[j++] = (char)v;
                        i += 2;
                } else {
                        d[j++] = s[i];
                }
        }
        d[j] = '\0';
        return d;
}

/* The decoded value of a query parameter, or NULL. */
static char *param(const char *query, const char *name)
{
        size_t n = strlen(name);

        for (const char *p = query; p && *p;) {
                const char *amp = strchr(p, '&');
                size_t len = amp ? (size_t)(amp - p) : strlen(p);

                if (len >= n && !strncmp(p, name, n) && (len == n || p[n] == '=')) {
                        char *raw = xstrndup(p + KYB_MIN(len, n + 1), len - KYB_MIN(len, n + 1));
                        char *v = decode(raw);

                        free(raw);
                        return v;
                }
                p = amp ? amp + 1 : p + len;
        }
        return NULL;
}

static void set_body(reply *rp, const char *fmt, ...)
{
        va_list ap;
        char *s = NULL;

        va_start(ap, fmt);
        assert_true(vasprintf(&s, fmt, ap) >= 0);
        va_end(ap);
        free(rp->body);
        rp->body = (unsigned char *)s;
        rp->body_len = strlen(s);
}

static void error(reply *rp, int status, const char *code)
{
        rp->status = status;
        set_body(rp,
                 "<?xml version=\"1.0\"?><Error><Code>%s</Code><Message>fake %s</Message></Error>",
                 code, code);
}

static fs3_object *find(fake_s3 *f, const char *key)
{
        for (size_t i = 0; i < f->n_objects; i++)
                if (!strcmp(f->objects[i].key, key))
                        return &f->objects[i];
        return NULL;
}

static void store(fake_s3 *f, const char *key, unsigned char *data, size_t len)
{
        fs3_object *o = find(f, key);

        if (!o) {
                f->objects = xrealloc(f->objects, (f->n_objects + 1) * sizeof(*f->objects));
                o = &f->objects[f->n_objects++];
                o->key = xstrndup(key, strlen(key));
        } else {
                free(o->data);
        }
        o->data = data;
        o->len = len;
}

static fs3_upload *upload(fake_s3 *f, const char *id)
{
        for (size_t i = 0; id && i < f->n_uploads; i++)
                if (!strcmp(f->uploads[i].id, id) && !f->uploads[i].aborted)
                        return &f->uploads[i];
        return NULL;
}

static void etag_header(reply *rp, const void *data, size_t len)
{
        char md5[33];

        md5_hex(data, len, md5);
        snprintf(rp->headers + strlen(rp->headers), sizeof(rp->headers) - strlen(rp->headers),
                 "ETag: \"%s\"\r\n", md5);
}

static void do_complete(fake_s3 *f, fs3_upload *u, const char *key, reply *rp)
{
        unsigned char *all = NULL;
        size_t len = 0;

        if (f->complete_error) {
                rp->status = 200;
                set_body(rp, "<?xml version=\"1.0\"?>\n<Error><Code>InternalError</Code></Error>");
                return;
        }
        for (size_t i = 0; i < 64 && u->parts[i].data; i++) {
                all = xrealloc(all, len + u->parts[i].len);
                memcpy(all + len, u->parts[i].data, u->parts[i].len);
                len += u->parts[i].len;
        }
        store(f, key, all, len);
        u->aborted = true;
        rp->status = 200;
        set_body(rp, "<CompleteMultipartUploadResult><Key>%s</Key></CompleteMultipartUploadResult>",
                 key);
}

static void do_list(fake_s3 *f, const char *query, reply *rp)
{
        char *prefix = param(query, "prefix");
        size_t cap = 256, len = 0;
        char *xml = xrealloc(NULL, cap);

        len += (size_t)sprintf(xml, "<ListBucketResult><IsTruncated>false</IsTruncated>");
        for (size_t i = 0; i < f->n_objects; i++) {
                const fs3_object *o = &f->objects[i];

                if (prefix && strncmp(o->key, prefix, strlen(prefix)))
                        continue;
                cap += strlen(o->key) + 256;
                xml = xrealloc(xml, cap);
                len += (size_t)sprintf(xml + len,
                                       "<Contents><Key>%s</Key><LastModified>2024-05-01T12:00:00."
                                       "000Z</LastModified><Size>%zu</Size></Contents>",
                                       o->key, o->len);
        }
        sprintf(xml + len, "</ListBucketResult>");
        rp->status = 200;
        rp->body = (unsigned char *)xml;
        rp->body_len = strlen(xml);
        free(prefix);
}

static void do_get(fake_s3 *f, fs3_request *r, fs3_object *o, reply *rp)
{
        char val[256], md5[35] = "\"";
        size_t from = 0;

        md5_hex(o->data, o->len, md5 + 1);
        strcat(md5, "\"");
        if (fs3_header(r, "If-Match", val, sizeof(val)) && strcmp(val, md5)) {
                error(rp, 412, "PreconditionFailed");
                return;
        }
        if (fs3_header(r, "Range", val, sizeof(val)))
                from = strtoull(val + strlen("bytes="), NULL, 10);
        rp->status = from ? 206 : 200;
        if (from)
                snprintf(rp->headers, sizeof(rp->headers), "Content-Range: bytes %zu-%zu/%zu\r\n",
                         from, o->len - 1, o->len);
        etag_header(rp, o->data, o->len);
        rp->body = xrealloc(NULL, o->len - from);
        memcpy(rp->body, o->data + from, o->len - from);
        rp->body_len = o->len - from;
        if (f->drop_get_after && !from) {
                rp->cut_at = f->drop_get_after;
                f->drop_get_after = 0;
        }
}

static void do_object(fake_s3 *f, fs3_request *r, const char *key, reply *rp)
{
        char *upload_id = param(r->query, "uploadId");
        char *part = param(r->query, "partNumber");
        fs3_upload *u = upload(f, upload_id);
        fs3_object *o = find(f, key);

        if (!strcmp(r->method, "POST") && strstr(r->query, "uploads")) {
                f->uploads = xrealloc(f->uploads, (f->n_uploads + 1) * sizeof(*f->uploads));
                u = &f->uploads[f->n_uploads];
                memset(u, 0, sizeof(*u));
                snprintf(u->id, sizeof(u->id), "up+%zu/x", f->n_uploads++);
                u->key = xstrndup(key, strlen(key));
                rp->status = 200;
                set_body(rp,
                         "<InitiateMultipartUploadResult><UploadId>%s</UploadId>"
                         "</InitiateMultipartUploadResult>",
                         u->id);
        } else if (upload_id && !u) {
                error(rp, 404, "NoSuchUpload");
        } else if (!strcmp(r->method, "PUT") && part) {
                fs3_object *p = &u->parts[atoi(part) - 1];

                free(p->data);
                p->data = TAKE_PTR(r->body);
                p->len = r->body_len;
                rp->status = 200;
                etag_header(rp, p->data, p->len);
        } else if (!strcmp(r->method, "POST") && u) {
                do_complete(f, u, key, rp);
        } else if (!strcmp(r->method, "DELETE") && u) {
                u->aborted = true;
                rp->status = 204;
        } else if (!strcmp(r->method, "PUT")) {
                etag_header(rp, r->body, r->body_len);
                store(f, key, TAKE_PTR(r->body), r->body_len);
                rp->status = 200;
        } else if (!o) {
                error(rp, 404, "NoSuchKey");
                rp->no_body = !strcmp(r->method, "HEAD");
        } else if (!strcmp(r->method, "HEAD")) {
                rp->status = 200;
                rp->no_body = true;
                rp->body_len = (size_t)((long)o->len + f->head_size_delta);
                etag_header(rp, o->data, o->len);
        } else if (!strcmp(r->method, "GET")) {
                do_get(f, r, o, rp);
        } else if (!strcmp(r->method, "DELETE")) {
                free(o->key);
                free(o->data);
                *o = f->objects[--f->n_objects];
                rp->status = 204;
        }
        free(upload_id);
        free(part);
}

static bool injected(fake_s3 *f, const fs3_request *r, reply *rp)
{
        char what[512];

        snprintf(what, sizeof(what), "%s ?%s", r->method, r->query);
        if (f->all_status) {
                error(rp, f->all_status, f->fail_code ? f->fail_code : "AccessDenied");
                return true;
        }
        if (!f->fail_count || !f->fail_match || !strstr(what, f->fail_match))
                return false;
        if (f->fail_count != UINT32_MAX)
                f->fail_count--;
        if (!f->fail_status)
                rp->drop = true;
        else
                error(rp, f->fail_status, f->fail_code ? f->fail_code : "InternalError");
        return true;
}

static void handle(fake_s3 *f, fs3_request *r, reply *rp)
{
        char *path = decode(r->path);
        char *slash = strchr(path + 1, '/');

        pthread_mutex_lock(&f->mu);
        f->log = xrealloc(f->log, (f->n_log + 1) * sizeof(*f->log));
        f->log[f->n_log] = *r;
        f->log[f->n_log].body = xrealloc(NULL, r->body_len);
        memcpy(f->log[f->n_log].body, r->body, r->body_len);
        f->log[f->n_log].path = xstrndup(r->path, strlen(r->path));
        f->log[f->n_log].query = xstrndup(r->query, strlen(r->query));
        f->log[f->n_log].headers = xstrndup(r->headers, strlen(r->headers));
        f->n_log++;
        if (!injected(f, r, rp)) {
                if (!slash && !strcmp(r->method, "GET"))
                        do_list(f, r->query, rp);
                else if (slash)
                        do_object(f, r, slash + 1, rp);
                else
                        error(rp, 400, "InvalidRequest");
        }
        pthread_mutex_unlock(&f->mu);
        free(path);
}

static bool respond(conn *c, const reply *rp)
{
        char head[2048];
        size_t body = rp->no_body ? 0 : rp->body_len;
        int n;

        if (rp->drop)
                return false;
        n = snprintf(head, sizeof(head), "HTTP/1.1 %d X\r\nContent-Length: %zu\r\n%s\r\n",
                     rp->status, rp->body_len, rp->headers);
        if (!send_all(c->fd, head, (size_t)n))
                return false;
        if (rp->cut_at) {
                /* Part of the body, then the connection goes: a transfer that breaks. */
                send_all(c->fd, rp->body, KYB_MIN(rp->cut_at, body));
                return false;
        }
        return send_all(c->fd, rp->body, body);
}

static void *serve(void *arg)
{
        conn *c = arg;
        bool alive = true;

        while (alive) {
                fs3_request r = {0};
                reply rp = {0};

                if (!read_request(c, &r)) {
                        free(r.path);
                        free(r.query);
                        free(r.headers);
                        break;
                }
                handle(c->f, &r, &rp);
                alive = respond(c, &rp);
                free(rp.body);
                free(r.path);
                free(r.query);
                free(r.headers);
                free(r.body);
        }
        shutdown(c->fd, SHUT_RDWR);
        free(c->buf);
        free(c);
        return NULL;
}

static void *accept_loop(void *arg)
{
        fake_s3 *f = arg;

        for (;;) {
                int fd = accept(f->listen_fd, NULL, NULL);
                conn *c;

                if (fd < 0)
                        return NULL;
                pthread_mutex_lock(&f->mu);
                if (f->stopping || f->n_conns == 256) {
                        pthread_mutex_unlock(&f->mu);
                        close(fd);
                        continue;
                }
                c = calloc(1, sizeof(*c));
                assert_non_null(c);
                c->f = f;
                c->fd = fd;
                f->conn_fds[f->n_conns] = fd;
                assert_int_equal(pthread_create(&f->conns[f->n_conns++], NULL, serve, c), 0);
                pthread_mutex_unlock(&f->mu);
        }
}

void fs3_start(fake_s3 *f)
{
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        socklen_t len = sizeof(a);

        pthread_mutex_init(&f->mu, NULL);
        f->listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        assert_true(f->listen_fd >= 0);
        assert_int_equal(bind(f->listen_fd, (struct sockaddr *)&a, sizeof(a)), 0);
        assert_int_equal(listen(f->listen_fd, 64), 0);
        assert_int_equal(getsockname(f->listen_fd, (struct sockaddr *)&a, &len), 0);
        f->port = ntohs(a.sin_port);
        assert_int_equal(pthread_create(&f->thread, NULL, accept_loop, f), 0);
}

void fs3_stop(fake_s3 *f)
{
        pthread_mutex_lock(&f->mu);
        f->stopping = true;
        pthread_mutex_unlock(&f->mu);
        shutdown(f->listen_fd, SHUT_RDWR);
        pthread_join(f->thread, NULL);
        close(f->listen_fd);
        for (size_t i = 0; i < f->n_conns; i++) {
                shutdown(f->conn_fds[i], SHUT_RDWR);
                pthread_join(f->conns[i], NULL);
                close(f->conn_fds[i]);
        }
        for (size_t i = 0; i < f->n_log; i++) {
                free(f->log[i].path);
                free(f->log[i].query);
                free(f->log[i].headers);
                free(f->log[i].body);
        }
        for (size_t i = 0; i < f->n_objects; i++) {
                free(f->objects[i].key);
                free(f->objects[i].data);
        }
        for (size_t i = 0; i < f->n_uploads; i++) {
                free(f->uploads[i].key);
                for (size_t j = 0; j < 64; j++)
                        free(f->uploads[i].parts[j].data);
        }
        free(f->log);
        free(f->objects);
        free(f->uploads);
        pthread_mutex_destroy(&f->mu);
}

size_t fs3_count(fake_s3 *f, const char *match)
{
        size_t n = 0;

        pthread_mutex_lock(&f->mu);
        for (size_t i = 0; i < f->n_log; i++) {
                char what[512];

                snprintf(what, sizeof(what), "%s ?%s", f->log[i].method, f->log[i].query);
                n += strstr(what, match) != NULL;
        }
        pthread_mutex_unlock(&f->mu);
        return n;
}

const fs3_object *fs3_find(fake_s3 *f, const char *key)
{
        const fs3_object *o;

        pthread_mutex_lock(&f->mu);
        o = find(f, key);
        pthread_mutex_unlock(&f->mu);
        return o;
}

void fs3_put(fake_s3 *f, const char *key, const void *data, size_t len)
{
        unsigned char *copy = xrealloc(NULL, len);

        memcpy(copy, data, len);
        pthread_mutex_lock(&f->mu);
        store(f, key, copy, len);
        pthread_mutex_unlock(&f->mu);
}
