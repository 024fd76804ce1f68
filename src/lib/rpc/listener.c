/* SPDX-License-Identifier: Apache-2.0 */
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include "rpc/listener.h"

struct kyb_rpc_listener {
        char *socket_path;
        int lock_fd;
        int listen_fd;
        int wake_fd; /* eventfd that tells the accept thread to stop */
        bool thread_running;
        pthread_t thread;
        kyb_rpc_peer_check_fn check;
        void *check_ctx;
        kyb_rpc_accept_fn on_accept;
        void *accept_ctx;
};

static int take_lock(const char *lock_path, int *out_fd, kyb_error **err)
{
        _cleanup_close_ int fd = open(lock_path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);

        if (fd < 0)
                return kyb_error_set(err, errno, "opening lock file %s", lock_path);
        if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
                if (errno == EWOULDBLOCK)
                        return kyb_error_setf(err, EADDRINUSE,
                                              "another instance holds %s: refusing to take over "
                                              "its socket",
                                              lock_path);
                return kyb_error_set(err, errno, "locking %s", lock_path);
        }
        *out_fd = TAKE_FD(fd);
        return 0;
}

static int bind_socket(const char *path, mode_t mode, int *out_fd, kyb_error **err)
{
        struct sockaddr_un addr = {.sun_family = AF_UNIX};
        _cleanup_close_ int fd = -1;

        if (strlen(path) >= sizeof(addr.sun_path))
                return kyb_error_setf(err, ENAMETOOLONG, "socket path %s is too long", path);
        strcpy(addr.sun_path, path);
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd < 0)
                return kyb_error_set(err, errno, "creating socket");
        /* We hold the lock, so whatever is at the path is a stale socket. */
        if (unlink(path) < 0 && errno != ENOENT)
                return kyb_error_set(err, errno, "removing stale socket %s", path);
        if (bind(fd, (struct sockaddr *)&addr, sizeof(addr)) < 0)
                return kyb_error_set(err, errno, "binding %s", path);
        /* Nobody can connect before listen(), so chmod first leaves no window
         * in which the socket is reachable with the default mode. */
        if (chmod(path, mode) < 0)
                return kyb_error_set(err, errno, "chmod %s", path);
        if (listen(fd, 128) < 0)
                return kyb_error_set(err, errno, "listening on %s", path);
        *out_fd = TAKE_FD(fd);
        return 0;
}

int kyb_rpc_listener_open(const char *socket_path, mode_t mode, const char *lock_path,
                          kyb_rpc_listener **out, kyb_error **err)
{
        kyb_rpc_listener *l = calloc(1, sizeof(*l));
        int rc;

        if (!l)
                return kyb_error_set(err, ENOMEM, "allocating listener");
        l->lock_fd = l->listen_fd = l->wake_fd = -1;
        l->socket_path = strdup(socket_path);
        if (!l->socket_path) {
                rc = kyb_error_set(err, ENOMEM, "allocating listener");
                goto fail;
        }
        rc = take_lock(lock_path, &l->lock_fd, err);
        if (rc < 0)
                goto fail;
        rc = bind_socket(socket_path, mode, &l->listen_fd, err);
        if (rc < 0)
                goto fail;
        l->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (l->wake_fd < 0) {
                rc = kyb_error_set(err, errno, "creating eventfd");
                goto fail;
        }
        *out = l;
        return 0;
fail:
        kyb_rpc_listener_free(l);
        return rc;
}

static int peer_of(int fd, kyb_rpc_peer *peer)
{
        struct ucred cred;
        socklen_t len = sizeof(cred);

        if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0)
                return -errno;
        *peer = (kyb_rpc_peer){.pid = cred.pid, .uid = cred.uid, .gid = cred.gid};
        return 0;
}

static void admit(kyb_rpc_listener *l, int fd)
{
        _cleanup_error_ kyb_error *err = NULL;
        kyb_rpc_peer peer;

        /* A peer we cannot identify is refused like an unauthorised one. */
        if (peer_of(fd, &peer) < 0 || (l->check && l->check(l->check_ctx, &peer, &err) < 0)) {
                close(fd);
                return;
        }
        l->on_accept(l->accept_ctx, fd);
}

static void *accept_loop(void *arg)
{
        kyb_rpc_listener *l = arg;
        struct pollfd fds[2] = {{.fd = l->listen_fd, .events = POLLIN},
                                {.fd = l->wake_fd, .events = POLLIN}};

        for (;;) {
                if (poll(fds, 2, -1) < 0) {
                        if (errno == EINTR)
                                continue;
                        break;
                }
                if (fds[1].revents)
                        break;
                int fd = accept4(l->listen_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
                if (fd >= 0)
                        admit(l, fd);
        }
        return NULL;
}

int kyb_rpc_listener_start(kyb_rpc_listener *l, kyb_rpc_peer_check_fn check, void *check_ctx,
                           kyb_rpc_accept_fn on_accept, void *accept_ctx, kyb_error **err)
{
        int rc;

        l->check = check;
        l->check_ctx = check_ctx;
        l->on_accept = on_accept;
        l->accept_ctx = accept_ctx;
        rc = pthread_create(&l->thread, NULL, accept_loop, l);
        if (rc != 0)
                return kyb_error_set(err, rc, "starting accept thread");
        l->thread_running = true;
        return 0;
}

void kyb_rpc_listener_stop(kyb_rpc_listener *l)
{
        if (l->thread_running) {
                uint64_t one = 1;
                if (write(l->wake_fd, &one, sizeof(one)) < 0) {
                        /* eventfd writes only fail on counter overflow. */
                }
                pthread_join(l->thread, NULL);
                l->thread_running = false;
        }
        if (l->listen_fd >= 0) {
                close(l->listen_fd);
                l->listen_fd = -1;
                unlink(l->socket_path);
        }
}

void kyb_rpc_listener_free(kyb_rpc_listener *l)
{
        if (!l)
                return;
        kyb_rpc_listener_stop(l);
        kyb_closep(&l->wake_fd);
        /* Closing the lock fd releases the flock; the file stays so that
         * the lock's inode never changes under a waiting instance. */
        kyb_closep(&l->lock_fd);
        free(l->socket_path);
        free(l);
}
