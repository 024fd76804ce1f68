/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Threading model: one poller thread drains the server's completion queue
 * and only ever does non-blocking work (re-arming requests, waking waiters).
 * Every call gets a worker thread that decodes the request, runs the handler
 * and performs the call's batches synchronously, waiting on a condition
 * variable that the poller signals. A call object is shared by its worker and
 * by the pending RECV_CLOSE_ON_SERVER op, hence the reference count.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <grpc/grpc.h>
#include <grpc/grpc_posix.h>
#include <grpc/grpc_security.h>
#include <grpc/support/time.h>

#include "rpc/codec.h"
#include "rpc/listener.h"
#include "rpc/server.h"
#include "rpc/status.h"

#define DEFAULT_MAX_CALLS   64
#define DEFAULT_MAX_MESSAGE (4 * 1024 * 1024)
#define DEFAULT_SOCKET_MODE 0600

typedef enum { TAG_REQUEST, TAG_BATCH, TAG_CLOSE, TAG_SHUTDOWN } tag_kind;

typedef struct rpc_tag {
        tag_kind kind;
        void *owner;
} rpc_tag;

typedef struct registered_method {
        const kyb_rpc_method *method;
        void *handle;
} registered_method;

/* One armed grpc_server_request_*call(); method NULL means "any unknown". */
typedef struct pending_request {
        rpc_tag tag;
        const registered_method *rm;
        grpc_call *call;
        gpr_timespec deadline;
        grpc_metadata_array metadata;
        grpc_byte_buffer *payload;
        grpc_call_details details;
} pending_request;

struct kyb_rpc_call {
        rpc_tag batch_tag;
        rpc_tag close_tag;
        kyb_rpc_server *srv;
        const kyb_rpc_method *method; /* NULL for unknown methods */
        char *path;
        grpc_call *call;
        gpr_timespec deadline; /* monotonic clock */
        grpc_byte_buffer *payload;
        pthread_mutex_t lock;
        pthread_cond_t cond;
        bool batch_done;
        bool batch_ok;
        bool initial_metadata_sent;
        int close_cancelled; /* written by RECV_CLOSE_ON_SERVER */
        atomic_bool cancelled;
        atomic_int refs;
};

struct kyb_rpc_server {
        grpc_server *server;
        grpc_completion_queue *cq;
        grpc_server_credentials *creds;
        kyb_rpc_listener *listener;
        pthread_t poller;
        bool poller_running;
        registered_method *methods;
        size_t n_methods;
        registered_method unknown; /* the generic request for unknown methods */
        void *userdata;
        unsigned max_calls;
        pthread_mutex_t lock;
        pthread_cond_t cond; /* signals active/shutdown_notified changes */
        unsigned active;
        bool stopping;
        bool shutdown_notified;
        bool shut_down;
        atomic_bool cancelling;
        rpc_tag shutdown_tag;
};

/* ------------------------------------------------------------------------ */
/* calls */

static void call_unref(kyb_rpc_call *call)
{
        if (atomic_fetch_sub(&call->refs, 1) != 1)
                return;
        grpc_call_unref(call->call);
        if (call->payload)
                grpc_byte_buffer_destroy(call->payload);
        pthread_mutex_destroy(&call->lock);
        pthread_cond_destroy(&call->cond);
        free(call->path);
        free(call);
}

static bool call_batch(kyb_rpc_call *call, const grpc_op *ops, size_t n)
{
        bool ok;

        pthread_mutex_lock(&call->lock);
        call->batch_done = false;
        pthread_mutex_unlock(&call->lock);
        if (grpc_call_start_batch(call->call, ops, n, &call->batch_tag, NULL) != GRPC_CALL_OK)
                return false;
        pthread_mutex_lock(&call->lock);
        while (!call->batch_done)
                pthread_cond_wait(&call->cond, &call->lock);
        ok = call->batch_ok;
        pthread_mutex_unlock(&call->lock);
        return ok;
}

static void on_batch_done(kyb_rpc_call *call, bool ok)
{
        pthread_mutex_lock(&call->lock);
        call->batch_done = true;
        call->batch_ok = ok;
        pthread_cond_broadcast(&call->cond);
        pthread_mutex_unlock(&call->lock);
}

static size_t add_initial_metadata(kyb_rpc_call *call, grpc_op *op)
{
        if (call->initial_metadata_sent)
                return 0;
        call->initial_metadata_sent = true;
        *op = (grpc_op){.op = GRPC_OP_SEND_INITIAL_METADATA};
        return 1;
}

/* Sends the final status, preceded by a unary response when given. */
static void call_finish(kyb_rpc_call *call, const ProtobufCMessage *response,
                        grpc_status_code status, const char *message)
{
        grpc_slice details = grpc_slice_from_copied_string(message ? message : "");
        grpc_byte_buffer *buf = response ? kyb_rpc_encode(response) : NULL;
        grpc_op ops[3];
        size_t n = add_initial_metadata(call, &ops[0]);

        if (buf)
                ops[n++] = (grpc_op){.op = GRPC_OP_SEND_MESSAGE, .data.send_message = {buf}};
        ops[n++] = (grpc_op){.op = GRPC_OP_SEND_STATUS_FROM_SERVER,
                             .data.send_status_from_server = {
                                 .status = status,
                                 .status_details = &details,
                             }};
        call_batch(call, ops, n);
        if (buf)
                grpc_byte_buffer_destroy(buf);
        grpc_slice_unref(details);
}

static void call_fail(kyb_rpc_call *call, int rc, kyb_error *err)
{
        const char *msg = err ? kyb_error_message(err) : kyb_strerror(-rc);

        call_finish(call, NULL, kyb_rpc_status_from_errno(rc), msg);
}

static void run_unary(kyb_rpc_call *call, const ProtobufCMessage *request)
{
        _cleanup_error_ kyb_error *err = NULL;
        ProtobufCMessage *response = NULL;
        int rc = call->method->unary(call, request, &response, &err);

        if (rc < 0 || !response) {
                call_fail(call, rc < 0 ? rc : -EIO, err);
                return;
        }
        call_finish(call, response, GRPC_STATUS_OK, NULL);
        if (call->method->free_response)
                call->method->free_response(response);
        else
                protobuf_c_message_free_unpacked(response, NULL);
}

static void run_stream(kyb_rpc_call *call, const ProtobufCMessage *request)
{
        _cleanup_error_ kyb_error *err = NULL;
        int rc = call->method->stream(call, request, &err);

        if (rc < 0)
                call_fail(call, rc, err);
        else
                call_finish(call, NULL, GRPC_STATUS_OK, NULL);
}

static bool over_limit(kyb_rpc_server *srv)
{
        bool over;

        pthread_mutex_lock(&srv->lock);
        over = srv->active > srv->max_calls;
        pthread_mutex_unlock(&srv->lock);
        return over;
}

static void run_call(kyb_rpc_call *call)
{
        _cleanup_error_ kyb_error *err = NULL;
        ProtobufCMessage *request = NULL;
        char msg[512];
        int rc;

        if (!call->method) {
                snprintf(msg, sizeof(msg), "unknown method %s", call->path);
                call_finish(call, NULL, GRPC_STATUS_UNIMPLEMENTED, msg);
                return;
        }
        if (over_limit(call->srv)) {
                call_finish(call, NULL, GRPC_STATUS_RESOURCE_EXHAUSTED,
                            "too many concurrent calls; retry later");
                return;
        }
        rc = kyb_rpc_decode(call->payload, call->method->request_type, &request, &err);
        if (rc < 0) {
                call_fail(call, rc, err);
                return;
        }
        if (call->method->unary)
                run_unary(call, request);
        else
                run_stream(call, request);
        protobuf_c_message_free_unpacked(request, NULL);
}

static void *call_worker(void *arg)
{
        kyb_rpc_call *call = arg;
        kyb_rpc_server *srv = call->srv;

        run_call(call);
        call_unref(call);
        pthread_mutex_lock(&srv->lock);
        srv->active--;
        pthread_cond_broadcast(&srv->cond);
        pthread_mutex_unlock(&srv->lock);
        return NULL;
}

/* ------------------------------------------------------------------------ */
/* accepting calls (poller thread) */

static void arm_request(kyb_rpc_server *srv, const registered_method *rm);

static void pending_free(pending_request *p)
{
        grpc_metadata_array_destroy(&p->metadata);
        grpc_call_details_destroy(&p->details);
        free(p);
}

static kyb_rpc_call *call_from_pending(kyb_rpc_server *srv, pending_request *p)
{
        kyb_rpc_call *call = calloc(1, sizeof(*call));

        if (!call)
                return NULL;
        call->batch_tag = (rpc_tag){TAG_BATCH, call};
        call->close_tag = (rpc_tag){TAG_CLOSE, call};
        call->srv = srv;
        call->method = p->rm->method;
        call->call = TAKE_PTR(p->call);
        call->payload = TAKE_PTR(p->payload);
        call->deadline = gpr_convert_clock_type(p->rm->method ? p->deadline : p->details.deadline,
                                                GPR_CLOCK_MONOTONIC);
        call->path =
            p->rm->method ? strdup(p->rm->method->path) : grpc_slice_to_c_string(p->details.method);
        pthread_mutex_init(&call->lock, NULL);
        pthread_cond_init(&call->cond, NULL);
        atomic_init(&call->refs, 1);
        return call;
}

static void start_close_watch(kyb_rpc_call *call)
{
        grpc_op op = {.op = GRPC_OP_RECV_CLOSE_ON_SERVER,
                      .data.recv_close_on_server = {&call->close_cancelled}};

        atomic_fetch_add(&call->refs, 1);
        if (grpc_call_start_batch(call->call, &op, 1, &call->close_tag, NULL) != GRPC_CALL_OK)
                atomic_fetch_sub(&call->refs, 1);
}

static void spawn_worker(kyb_rpc_server *srv, kyb_rpc_call *call)
{
        pthread_attr_t attr;
        pthread_t thread;
        int rc;

        pthread_mutex_lock(&srv->lock);
        srv->active++;
        pthread_mutex_unlock(&srv->lock);
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        rc = pthread_create(&thread, &attr, call_worker, call);
        pthread_attr_destroy(&attr);
        if (rc != 0) {
                /* No thread to reply from: the client sees the call cancelled. */
                grpc_call_cancel_with_status(call->call, GRPC_STATUS_RESOURCE_EXHAUSTED,
                                             "cannot start a handler thread", NULL);
                call_unref(call);
                pthread_mutex_lock(&srv->lock);
                srv->active--;
                pthread_cond_broadcast(&srv->cond);
                pthread_mutex_unlock(&srv->lock);
        }
}

static void on_request(kyb_rpc_server *srv, pending_request *p, bool ok)
{
        kyb_rpc_call *call;
        bool stopping;

        pthread_mutex_lock(&srv->lock);
        stopping = srv->stopping;
        pthread_mutex_unlock(&srv->lock);
        if (ok && !stopping)
                arm_request(srv, p->rm);
        if (!ok) {
                pending_free(p);
                return;
        }
        call = call_from_pending(srv, p);
        if (!call) {
                grpc_call_cancel_with_status(p->call, GRPC_STATUS_RESOURCE_EXHAUSTED,
                                             "out of memory", NULL);
                grpc_call_unref(p->call);
                if (p->payload)
                        grpc_byte_buffer_destroy(p->payload);
                pending_free(p);
                return;
        }
        pending_free(p);
        start_close_watch(call);
        spawn_worker(srv, call);
}

static void arm_request(kyb_rpc_server *srv, const registered_method *rm)
{
        pending_request *p = calloc(1, sizeof(*p));
        grpc_call_error rc;

        if (!p)
                return;
        p->tag = (rpc_tag){TAG_REQUEST, p};
        p->rm = rm;
        grpc_metadata_array_init(&p->metadata);
        grpc_call_details_init(&p->details);
        if (rm->method)
                rc = grpc_server_request_registered_call(srv->server, rm->handle, &p->call,
                                                         &p->deadline, &p->metadata, &p->payload,
                                                         srv->cq, srv->cq, &p->tag);
        else
                rc = grpc_server_request_call(srv->server, &p->call, &p->details, &p->metadata,
                                              srv->cq, srv->cq, &p->tag);
        if (rc != GRPC_CALL_OK)
                pending_free(p);
}

static void on_close(kyb_rpc_call *call)
{
        if (call->close_cancelled)
                atomic_store(&call->cancelled, true);
        call_unref(call);
}

static void *poll_loop(void *arg)
{
        kyb_rpc_server *srv = arg;

        for (;;) {
                grpc_event ev =
                    grpc_completion_queue_next(srv->cq, gpr_inf_future(GPR_CLOCK_MONOTONIC), NULL);
                if (ev.type == GRPC_QUEUE_SHUTDOWN)
                        break;
                if (ev.type != GRPC_OP_COMPLETE)
                        continue;
                rpc_tag *tag = ev.tag;
                switch (tag->kind) {
                case TAG_REQUEST:
                        on_request(srv, tag->owner, ev.success);
                        break;
                case TAG_BATCH:
                        on_batch_done(tag->owner, ev.success);
                        break;
                case TAG_CLOSE:
                        on_close(tag->owner);
                        break;
                case TAG_SHUTDOWN:
                        pthread_mutex_lock(&srv->lock);
                        srv->shutdown_notified = true;
                        pthread_cond_broadcast(&srv->cond);
                        pthread_mutex_unlock(&srv->lock);
                        break;
                }
        }
        return NULL;
}

/* ------------------------------------------------------------------------ */
/* server lifecycle */

static void on_connection(void *ctx, int fd)
{
        kyb_rpc_server *srv = ctx;

        /* gRPC takes ownership of fd. */
        grpc_server_add_channel_from_fd(srv->server, fd, srv->creds);
}

static int register_methods(kyb_rpc_server *srv, const kyb_rpc_server_options *opts,
                            kyb_error **err)
{
        srv->methods = calloc(opts->n_methods ? opts->n_methods : 1, sizeof(*srv->methods));
        if (!srv->methods)
                return kyb_error_set(err, ENOMEM, "allocating method table");
        srv->n_methods = opts->n_methods;
        for (size_t i = 0; i < opts->n_methods; i++) {
                const kyb_rpc_method *m = &opts->methods[i];
                if (!m->path || !m->request_type || !m->unary == !m->stream)
                        return kyb_error_setf(err, EINVAL,
                                              "method %zu (%s) needs a path, a request type and "
                                              "exactly one handler",
                                              i, m->path ? m->path : "?");
                srv->methods[i].method = m;
                srv->methods[i].handle = grpc_server_register_method(
                    srv->server, m->path, NULL, GRPC_SRM_PAYLOAD_READ_INITIAL_BYTE_BUFFER, 0);
                if (!srv->methods[i].handle)
                        return kyb_error_setf(err, EEXIST, "cannot register method %s", m->path);
        }
        return 0;
}

static grpc_server *create_grpc_server(size_t max_message)
{
        grpc_arg args[] = {
            {.type = GRPC_ARG_INTEGER,
             .key = GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH,
             .value.integer = (int)max_message},
        };
        grpc_channel_args channel_args = {.num_args = KYB_ARRAY_SIZE(args), .args = args};

        return grpc_server_create(&channel_args, NULL);
}

static void server_init_sync(kyb_rpc_server *srv)
{
        pthread_condattr_t attr;

        pthread_condattr_init(&attr);
        pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
        pthread_cond_init(&srv->cond, &attr);
        pthread_condattr_destroy(&attr);
        pthread_mutex_init(&srv->lock, NULL);
}

static int server_setup(kyb_rpc_server *srv, const kyb_rpc_server_options *opts, kyb_error **err)
{
        _cleanup_free_ char *lock_path = NULL;
        int rc;

        if (!opts->socket_path || !*opts->socket_path)
                return kyb_error_setf(err, EINVAL, "no socket path given");
        if (!opts->lock_path && asprintf(&lock_path, "%s.lock", opts->socket_path) < 0)
                return kyb_error_set(err, ENOMEM, "allocating lock path");
        rc = kyb_rpc_listener_open(
            opts->socket_path, opts->socket_mode ? opts->socket_mode : DEFAULT_SOCKET_MODE,
            opts->lock_path ? opts->lock_path : lock_path, &srv->listener, err);
        if (rc < 0)
                return rc;
        srv->server = create_grpc_server(opts->max_message_bytes ? opts->max_message_bytes
                                                                 : DEFAULT_MAX_MESSAGE);
        srv->cq = grpc_completion_queue_create_for_next(NULL);
        srv->creds = grpc_insecure_server_credentials_create();
        grpc_server_register_completion_queue(srv->server, srv->cq, NULL);
        rc = register_methods(srv, opts, err);
        if (rc < 0)
                return rc;
        grpc_server_start(srv->server);
        for (size_t i = 0; i < srv->n_methods; i++)
                arm_request(srv, &srv->methods[i]);
        arm_request(srv, &srv->unknown);
        rc = pthread_create(&srv->poller, NULL, poll_loop, srv);
        if (rc != 0)
                return kyb_error_set(err, rc, "starting completion-queue thread");
        srv->poller_running = true;
        return kyb_rpc_listener_start(srv->listener, opts->peer_check, opts->userdata,
                                      on_connection, srv, err);
}

int kyb_rpc_server_start(const kyb_rpc_server_options *opts, kyb_rpc_server **out, kyb_error **err)
{
        kyb_rpc_server *srv = calloc(1, sizeof(*srv));
        int rc;

        if (!srv)
                return kyb_error_set(err, ENOMEM, "allocating server");
        grpc_init();
        server_init_sync(srv);
        srv->userdata = opts->userdata;
        srv->max_calls =
            opts->max_concurrent_calls ? opts->max_concurrent_calls : DEFAULT_MAX_CALLS;
        srv->shutdown_tag = (rpc_tag){TAG_SHUTDOWN, srv};
        rc = server_setup(srv, opts, err);
        if (rc < 0) {
                kyb_rpc_server_free(srv);
                return kyb_error_wrap(err, rc, "rpc server on %s",
                                      opts->socket_path ? opts->socket_path : "(none)");
        }
        *out = srv;
        return 0;
}

/* Waits until no handler runs; false if deadline (monotonic) passed first. */
static bool wait_idle(kyb_rpc_server *srv, const struct timespec *deadline)
{
        bool idle;

        pthread_mutex_lock(&srv->lock);
        while (srv->active > 0) {
                if (!deadline)
                        pthread_cond_wait(&srv->cond, &srv->lock);
                else if (pthread_cond_timedwait(&srv->cond, &srv->lock, deadline) == ETIMEDOUT)
                        break;
        }
        idle = srv->active == 0;
        pthread_mutex_unlock(&srv->lock);
        return idle;
}

static struct timespec deadline_in(int64_t ms)
{
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        ts.tv_sec += ms / 1000;
        ts.tv_nsec += (ms % 1000) * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
                ts.tv_sec++;
                ts.tv_nsec -= 1000000000L;
        }
        return ts;
}

static void drain_handlers(kyb_rpc_server *srv, int64_t grace_ms)
{
        struct timespec deadline = deadline_in(grace_ms > 0 ? grace_ms : 0);

        if (wait_idle(srv, &deadline))
                return;
        atomic_store(&srv->cancelling, true);
        grpc_server_cancel_all_calls(srv->server);
        wait_idle(srv, NULL);
}

void kyb_rpc_server_shutdown(kyb_rpc_server *srv, int64_t grace_ms)
{
        if (srv->shut_down)
                return;
        srv->shut_down = true;
        if (srv->listener)
                kyb_rpc_listener_stop(srv->listener);
        pthread_mutex_lock(&srv->lock);
        srv->stopping = true;
        pthread_mutex_unlock(&srv->lock);
        if (srv->server && srv->poller_running) {
                grpc_server_shutdown_and_notify(srv->server, srv->cq, &srv->shutdown_tag);
                drain_handlers(srv, grace_ms);
                grpc_server_cancel_all_calls(srv->server);
                pthread_mutex_lock(&srv->lock);
                while (!srv->shutdown_notified)
                        pthread_cond_wait(&srv->cond, &srv->lock);
                pthread_mutex_unlock(&srv->lock);
        }
        if (srv->server)
                grpc_server_destroy(srv->server);
        srv->server = NULL;
        if (srv->cq) {
                grpc_completion_queue_shutdown(srv->cq);
                if (srv->poller_running)
                        pthread_join(srv->poller, NULL);
                else
                        while (grpc_completion_queue_next(srv->cq,
                                                          gpr_inf_future(GPR_CLOCK_MONOTONIC), NULL)
                                   .type != GRPC_QUEUE_SHUTDOWN)
                                ;
                grpc_completion_queue_destroy(srv->cq);
                srv->cq = NULL;
        }
        srv->poller_running = false;
}

void kyb_rpc_server_free(kyb_rpc_server *srv)
{
        if (!srv)
                return;
        kyb_rpc_server_shutdown(srv, 0);
        kyb_rpc_listener_free(srv->listener);
        if (srv->creds)
                grpc_server_credentials_release(srv->creds);
        free(srv->methods);
        pthread_mutex_destroy(&srv->lock);
        pthread_cond_destroy(&srv->cond);
        free(srv);
        grpc_shutdown_blocking();
}

unsigned kyb_rpc_server_active_calls(kyb_rpc_server *srv)
{
        unsigned n;

        pthread_mutex_lock(&srv->lock);
        n = srv->active;
        pthread_mutex_unlock(&srv->lock);
        return n;
}

/* ------------------------------------------------------------------------ */
/* handler API */

void *kyb_rpc_call_userdata(const kyb_rpc_call *call)
{
        return call->srv->userdata;
}

const char *kyb_rpc_call_method(const kyb_rpc_call *call)
{
        return call->path;
}

int64_t kyb_rpc_call_remaining_ms(const kyb_rpc_call *call)
{
        gpr_timespec now = gpr_now(GPR_CLOCK_MONOTONIC);
        gpr_timespec left;

        if (gpr_time_cmp(call->deadline, gpr_inf_future(GPR_CLOCK_MONOTONIC)) == 0)
                return INT64_MAX;
        if (gpr_time_cmp(call->deadline, now) <= 0)
                return 0;
        left = gpr_time_sub(call->deadline, now);
        return gpr_time_to_millis(left);
}

bool kyb_rpc_call_cancelled(const kyb_rpc_call *call)
{
        return atomic_load(&call->cancelled) || atomic_load(&call->srv->cancelling) ||
               kyb_rpc_call_remaining_ms(call) == 0;
}

int kyb_rpc_call_check(const kyb_rpc_call *call, kyb_error **err)
{
        if (kyb_rpc_call_remaining_ms(call) == 0)
                return kyb_error_setf(err, ETIMEDOUT, "%s: deadline exceeded", call->path);
        if (atomic_load(&call->srv->cancelling))
                return kyb_error_setf(err, ECANCELED, "%s: server shutting down", call->path);
        if (atomic_load(&call->cancelled))
                return kyb_error_setf(err, ECANCELED, "%s: cancelled by the client", call->path);
        return 0;
}

int kyb_rpc_call_send(kyb_rpc_call *call, const ProtobufCMessage *msg, kyb_error **err)
{
        int rc = kyb_rpc_call_check(call, err);
        grpc_byte_buffer *buf;
        grpc_op ops[2];
        size_t n;
        bool ok;

        if (rc < 0)
                return rc;
        buf = kyb_rpc_encode(msg);
        if (!buf)
                return kyb_error_set(err, ENOMEM, "%s: encoding message", call->path);
        n = add_initial_metadata(call, &ops[0]);
        ops[n++] = (grpc_op){.op = GRPC_OP_SEND_MESSAGE, .data.send_message = {buf}};
        ok = call_batch(call, ops, n);
        grpc_byte_buffer_destroy(buf);
        if (!ok)
                return kyb_error_setf(err, ECANCELED, "%s: client went away", call->path);
        return 0;
}
