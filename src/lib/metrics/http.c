/* SPDX-License-Identifier: Apache-2.0 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include <microhttpd.h>

#include "metrics/metrics.h"

struct kyb_http {
        struct MHD_Daemon *daemon;
        kyb_metrics *metrics;
        kyb_health_fn health;
        void *health_ctx;
        int port;
};

static enum MHD_Result reply(struct MHD_Connection *conn, unsigned status, char *body,
                             const char *content_type)
{
        struct MHD_Response *resp;
        enum MHD_Result rc;

        if (!body)
                return MHD_NO;
        resp = MHD_create_response_from_buffer(strlen(body), body, MHD_RESPMEM_MUST_FREE);
        if (!resp) {
                free(body);
                return MHD_NO;
        }
        MHD_add_response_header(resp, "Content-Type", content_type);
        rc = MHD_queue_response(conn, status, resp);
        MHD_destroy_response(resp);
        return rc;
}

static enum MHD_Result serve_health(kyb_http *h, struct MHD_Connection *conn)
{
        _cleanup_error_ kyb_error *err = NULL;
        char *body = NULL;

        if (!h->health || h->health(h->health_ctx, &err) >= 0)
                return reply(conn, MHD_HTTP_OK, strdup("ok\n"), "text/plain");
        if (asprintf(&body, "unhealthy: %s\n", kyb_error_message(err)) < 0)
                return MHD_NO;
        return reply(conn, MHD_HTTP_SERVICE_UNAVAILABLE, body, "text/plain");
}

static enum MHD_Result handle(void *cls, struct MHD_Connection *conn, const char *url,
                              const char *method, const char *version, const char *upload_data,
                              size_t *upload_data_size, void **req_cls)
{
        kyb_http *h = cls;

        if (strcmp(method, "GET") && strcmp(method, "HEAD"))
                return reply(conn, MHD_HTTP_METHOD_NOT_ALLOWED, strdup("method not allowed\n"),
                             "text/plain");
        if (!strcmp(url, "/metrics"))
                return reply(conn, MHD_HTTP_OK, kyb_metrics_render(h->metrics),
                             "text/plain; version=0.0.4; charset=utf-8");
        if (!strcmp(url, "/healthz"))
                return serve_health(h, conn);
        return reply(conn, MHD_HTTP_NOT_FOUND, strdup("not found\n"), "text/plain");
}

static int parse_addr(const char *addr, struct sockaddr_in *sin, kyb_error **err)
{
        _cleanup_free_ char *host = strdup(addr);
        char *colon = host ? strrchr(host, ':') : NULL;
        char *end;
        long port;

        if (!colon)
                return kyb_error_setf(err, EINVAL, "address '%s' is not HOST:PORT", addr);
        *colon = '\0';
        port = strtol(colon + 1, &end, 10);
        if (*end || port < 0 || port > 65535 || colon[1] == '\0')
                return kyb_error_setf(err, EINVAL, "address '%s': bad port", addr);
        *sin = (struct sockaddr_in){.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
        if (inet_pton(AF_INET, host, &sin->sin_addr) != 1)
                return kyb_error_setf(err, EINVAL, "address '%s': host must be an IPv4 address",
                                      addr);
        return 0;
}

static int bound_port(struct MHD_Daemon *d)
{
        const union MHD_DaemonInfo *info = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);

        return info ? info->port : -1;
}

int kyb_http_start(const char *addr, kyb_metrics *m, kyb_health_fn health, void *health_ctx,
                   kyb_http **out, kyb_error **err)
{
        struct sockaddr_in sin;
        kyb_http *h;
        int rc = parse_addr(addr, &sin, err);

        if (rc < 0)
                return rc;
        h = calloc(1, sizeof(*h));
        if (!h)
                return kyb_error_set(err, ENOMEM, "allocating http server");
        *h = (kyb_http){.metrics = m, .health = health, .health_ctx = health_ctx};
        h->daemon = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_POLL, 0, NULL, NULL,
                                     handle, h, MHD_OPTION_SOCK_ADDR, &sin,
                                     MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)10,
                                     MHD_OPTION_CONNECTION_LIMIT, (unsigned)32, MHD_OPTION_END);
        if (!h->daemon) {
                free(h);
                return kyb_error_set(err, errno ? errno : EADDRINUSE, "listening on %s", addr);
        }
        h->port = bound_port(h->daemon);
        *out = h;
        return 0;
}

int kyb_http_port(const kyb_http *h)
{
        return h->port;
}

void kyb_http_stop(kyb_http *h)
{
        if (!h)
                return;
        MHD_stop_daemon(h->daemon);
        free(h);
}
