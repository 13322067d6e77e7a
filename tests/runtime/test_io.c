/* test_io: I/O for processes, through io_uring and through the epoll
 * control: every test runs once per backend. */
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <sys/socket.h>
#include <unistd.h>

#include <rt/io.h>

#include "rt_test.h"

/* Both backends, one Test each. */
#define IO_TEST(name, ...)                                                                         \
    static void name(int backend);                                                                 \
    Test(io_uring, name, ##__VA_ARGS__)                                                            \
    {                                                                                              \
        name(RT_IO_URING);                                                                         \
    }                                                                                              \
    Test(io_epoll, name, ##__VA_ARGS__)                                                            \
    {                                                                                              \
        name(RT_IO_EPOLL);                                                                         \
    }                                                                                              \
    static void name(int backend)

static void io_start(int backend, unsigned bufs, unsigned bufsize)
{
    rt_opts o = {.schedulers = 2, .io = backend, .io_bufs = bufs, .io_buf_size = bufsize};
    test_start_opts(&o);
    cr_assert_str_eq(rt_io_backend(), backend == RT_IO_URING ? "io_uring" : "epoll");
}

/* A listening TCP socket on 127.0.0.1, owned by the caller; its port. */
static int listen_tcp(uint16_t *port)
{
    int fd = rt_socket(AF_INET, SOCK_STREAM, 0);
    cr_assert_geq(fd, 0, "rt_socket: %s", rt_strerror(fd));
    int on = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    cr_assert_eq(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    cr_assert_eq(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    cr_assert_eq(listen(fd, 256), 0);
    *port = ntohs(a.sin_port);
    return fd;
}

static struct sockaddr_in loopback(uint16_t port)
{
    return (struct sockaddr_in){
        .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK), .sin_port = htons(port)};
}

static int connect_tcp(uint16_t port)
{
    int fd = rt_socket(AF_INET, SOCK_STREAM, 0);
    cr_assert_geq(fd, 0);
    struct sockaddr_in a = loopback(port);
    int rc = rt_connect(fd, (struct sockaddr *)&a, sizeof a, 5000);
    cr_assert_eq(rc, 0, "rt_connect: %s", rt_strerror(rc));
    return fd;
}

/* ---- echo through stackful processes ---------------------------------------------- */

static void echo_conn(void *arg)
{
    int fd = (int)(intptr_t)arg;
    cr_assert_eq(rt_io_own(fd), 0);
    char buf[4096];
    for (;;) {
        ssize_t n = rt_recv(fd, buf, sizeof buf, 10000);
        if (n <= 0)
            return;
        cr_assert_eq(rt_send_all(fd, buf, (size_t)n, 10000), n);
    }
}

struct server {
    rt_pid pid;
    uint16_t port;
};

static void echo_server(void *arg)
{
    struct server *s = arg;
    int l = listen_tcp(&s->port);
    rt_send(s->pid, 1, NULL, 0);
    for (;;) {
        struct sockaddr_in peer;
        socklen_t len = sizeof peer;
        int fd = rt_accept(l, (struct sockaddr *)&peer, &len, RT_INFINITY);
        cr_assert_geq(fd, 0, "rt_accept: %s", rt_strerror(fd));
        cr_assert_eq(peer.sin_family, AF_INET);
        cr_assert_eq(rt_io_disown(fd), 0);
        cr_assert_eq(rt_spawn(echo_conn, (void *)(intptr_t)fd, NULL, NULL), 0);
    }
}

static rt_pid start_echo_server(struct server *s)
{
    s->pid = rt_self();
    rt_pid p;
    cr_assert_eq(rt_spawn(echo_server, s, NULL, &p), 0);
    rt_msg_free(test_recv_tag(1, 5000));
    return p;
}

static void echo_body(void *arg)
{
    struct server s;
    rt_pid srv = start_echo_server(&s);
    int fd = connect_tcp(s.port);
    char out[1000], in[1000];
    for (int i = 0; i < 200; i++) {
        size_t n = 1 + (size_t)(i * 7) % sizeof out;
        memset(out, 'a' + i % 26, n);
        cr_assert_eq(rt_send_all(fd, out, n, 5000), (ssize_t)n);
        size_t got = 0;
        while (got < n) {
            ssize_t k = rt_recv(fd, in + got, n - got, 5000);
            cr_assert_gt(k, 0, "rt_recv: %s", rt_strerror((int)k));
            got += (size_t)k;
        }
        cr_assert_eq(memcmp(in, out, n), 0);
    }
    cr_assert_eq(rt_close(fd), 0);
    rt_exit(srv, RT_EXIT_KILL);
}

IO_TEST(tcp_echo_stackful)
{
    io_start(backend, 0, 0);
    cr_assert_eq(test_run(echo_body, NULL, 30000), 0);
    test_stop();
}

/* ---- echo through a callback actor: multishot accept and recv ----------------------------- */

struct aserver {
    int lfd;
    rt_pid report;
    struct {
        rt_io_req req;
        void *buf;
    } sending[64]; /* buffers the kernel holds until their send completes */
};

static void aserver_handle(void *st, rt_msg *m)
{
    struct aserver *s = st;
    const rt_io_result *r = rt_io_result_of(m);
    if (r == NULL)
        return;
    if (r->op == RT_IO_ACCEPT && r->res >= 0) {
        int fd = rt_io_take_fd(m);
        cr_assert_geq(fd, 0);
        cr_assert_eq(rt_io_recv(fd, NULL, 0, 0, RT_IO_MULTISHOT | RT_IO_BUFSEL, NULL), 0);
    } else if (r->op == RT_IO_RECV && r->res > 0) {
        cr_assert_eq(rt_send(s->report, 2, m->data, m->size), 0);
        /* echo a copy, kept until the kernel is done with it */
        char *copy = malloc(m->size);
        memcpy(copy, m->data, m->size);
        for (int i = 0; i < 64; i++) {
            if (s->sending[i].buf == NULL) {
                s->sending[i].buf = copy;
                cr_assert_eq(rt_io_send(r->fd, copy, m->size, 0, &s->sending[i].req), 0);
                return;
            }
        }
        cr_assert_fail("more than 64 sends in flight");
    } else if (r->op == RT_IO_SEND) {
        for (int i = 0; i < 64; i++) {
            if (s->sending[i].buf && s->sending[i].req == r->req) {
                free(s->sending[i].buf);
                s->sending[i].buf = NULL;
            }
        }
    }
}

static int aserver_init(void *st, void *arg)
{
    struct aserver *s = st;
    s->report = *(rt_pid *)arg;
    uint16_t port;
    s->lfd = listen_tcp(&port);
    rt_send(s->report, 1, &port, sizeof port);
    return rt_io_accept(s->lfd, RT_IO_MULTISHOT, NULL);
}

static const rt_actor_ops aserver_ops = {
    .state_size = sizeof(struct aserver), .init = aserver_init, .handle = aserver_handle};

static void actor_echo_body(void *arg)
{
    rt_pid self = rt_self(), srv;
    cr_assert_eq(rt_spawn_actor(&aserver_ops, &self, NULL, &srv), 0);
    rt_msg *m = test_recv_tag(1, 5000);
    uint16_t port = *(uint16_t *)m->data;
    rt_msg_free(m);
    int fds[5];
    for (int c = 0; c < 5; c++)
        fds[c] = connect_tcp(port);
    for (int c = 0; c < 5; c++)
        cr_assert_eq(rt_send_all(fds[c], "hello", 5, 5000), 5);
    size_t seen = 0;
    while (seen < 25) {
        m = test_recv_tag(2, 5000);
        seen += m->size;
        rt_msg_free(m);
    }
    char buf[5];
    for (int c = 0; c < 5; c++) {
        size_t got = 0;
        while (got < 5) {
            ssize_t k = rt_recv(fds[c], buf + got, 5 - got, 5000);
            cr_assert_gt(k, 0);
            got += (size_t)k;
        }
        cr_assert_eq(memcmp(buf, "hello", 5), 0);
    }
    rt_exit(srv, RT_EXIT_KILL);
}

IO_TEST(tcp_echo_callback_actor_multishot)
{
    io_start(backend, 0, 0);
    cr_assert_eq(test_run(actor_echo_body, NULL, 30000), 0);
    test_stop();
}

/* ---- UDP ---------------------------------------------------------------------------------- */

static void udp_body(void *arg)
{
    int a = rt_socket(AF_INET, SOCK_DGRAM, 0), b = rt_socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in aa = loopback(0), ba = loopback(0);
    socklen_t len = sizeof aa;
    cr_assert_eq(bind(a, (struct sockaddr *)&aa, sizeof aa), 0);
    cr_assert_eq(getsockname(a, (struct sockaddr *)&aa, &len), 0);
    cr_assert_eq(bind(b, (struct sockaddr *)&ba, sizeof ba), 0);
    len = sizeof ba;
    cr_assert_eq(getsockname(b, (struct sockaddr *)&ba, &len), 0);
    for (int i = 0; i < 50; i++) {
        char out[32], in[32];
        int n = snprintf(out, sizeof out, "datagram %d", i);
        struct iovec iov = {.iov_base = out, .iov_len = (size_t)n};
        struct msghdr mh = {
            .msg_name = &ba, .msg_namelen = sizeof ba, .msg_iov = &iov, .msg_iovlen = 1};
        rt_io_req req;
        cr_assert_eq(rt_io_sendmsg(a, &mh, 0, &req), 0);
        rt_msg *m = test_recv_tag(RT_MSG_IO, 5000);
        cr_assert_eq(rt_io_result_of(m)->res, n);
        rt_msg_free(m);
        struct sockaddr_in from;
        struct iovec iin = {.iov_base = in, .iov_len = sizeof in};
        struct msghdr rh = {
            .msg_name = &from, .msg_namelen = sizeof from, .msg_iov = &iin, .msg_iovlen = 1};
        cr_assert_eq(rt_io_recvmsg(b, &rh, 0, 0, &req), 0);
        m = test_recv_tag(RT_MSG_IO, 5000);
        const rt_io_result *r = rt_io_result_of(m);
        cr_assert_eq(r->req, req);
        cr_assert_eq(r->res, n);
        cr_assert_eq(memcmp(in, out, (size_t)n), 0);
        cr_assert_eq(from.sin_port, aa.sin_port, "the sender's address came back");
        rt_msg_free(m);
    }
}

IO_TEST(udp_sendmsg_recvmsg)
{
    io_start(backend, 0, 0);
    cr_assert_eq(test_run(udp_body, NULL, 30000), 0);
    test_stop();
}

/* ---- many connections, one multishot receiver each ------------------------------------------- */

#define CONNS    100
#define PER_CONN 20000

struct counting {
    rt_pid report;
    size_t bytes;
    int conns_closed;
};

static void counting_handle(void *st, rt_msg *m)
{
    struct counting *c = st;
    const rt_io_result *r = rt_io_result_of(m);
    if (r == NULL)
        return;
    if (r->op == RT_IO_ACCEPT && r->res >= 0) {
        int fd = rt_io_take_fd(m);
        rt_io_recv(fd, NULL, 0, 0, RT_IO_MULTISHOT | RT_IO_BUFSEL, NULL);
    } else if (r->op == RT_IO_RECV) {
        if (r->res > 0)
            c->bytes += m->size;
        if (!(r->flags & RT_IO_F_MORE) && r->res == 0 && ++c->conns_closed == CONNS)
            rt_send(c->report, 4, &c->bytes, sizeof c->bytes);
        else if (!(r->flags & RT_IO_F_MORE) && r->res > 0)
            rt_io_recv(r->fd, NULL, 0, 0, RT_IO_MULTISHOT | RT_IO_BUFSEL, NULL);
    }
}

static int counting_init(void *st, void *arg)
{
    struct counting *c = st;
    c->report = ((rt_pid *)arg)[0];
    uint16_t port;
    int l = listen_tcp(&port);
    rt_send(c->report, 1, &port, sizeof port);
    return rt_io_accept(l, RT_IO_MULTISHOT, NULL);
}

static const rt_actor_ops counting_ops = {
    .state_size = sizeof(struct counting), .init = counting_init, .handle = counting_handle};

static void writer(void *arg)
{
    uint16_t port = (uint16_t)(intptr_t)arg;
    int fd = connect_tcp(port);
    static char chunk[PER_CONN];
    cr_assert_eq(rt_send_all(fd, chunk, sizeof chunk, 10000), (ssize_t)sizeof chunk);
    cr_assert_eq(rt_close(fd), 0);
}

static void many_body(void *arg)
{
    rt_pid self = rt_self(), srv;
    cr_assert_eq(rt_spawn_actor(&counting_ops, &self, NULL, &srv), 0);
    rt_msg *m = test_recv_tag(1, 5000);
    uint16_t port = *(uint16_t *)m->data;
    rt_msg_free(m);
    for (int i = 0; i < CONNS; i++)
        cr_assert_eq(rt_spawn(writer, (void *)(intptr_t)port, NULL, NULL), 0);
    m = test_recv_tag(4, 30000);
    size_t total = *(size_t *)m->data;
    rt_msg_free(m);
    cr_assert_eq(total, (size_t)CONNS * PER_CONN, "every byte of %d connections", CONNS);
    rt_exit(srv, RT_EXIT_KILL);
}

IO_TEST(multishot_receive_across_many_connections)
{
    io_start(backend, 0, 0);
    cr_assert_eq(test_run(many_body, NULL, 60000), 0);
    test_stop();
}

/* ---- the buffer ring runs dry under a slow consumer -------------------------------------------
 */

#define DRY_BYTES (1u << 20)

static void slow_consumer(void *arg)
{
    rt_pid report = *(rt_pid *)arg;
    uint32_t next = 0; /* the byte pattern: position & 0xFF */
    size_t seen = 0;
    while (seen < DRY_BYTES) {
        rt_msg *m = test_recv_tag(RT_MSG_IO, 20000);
        const unsigned char *p = m->data;
        for (size_t i = 0; i < m->size; i++, next++)
            if (p[i] != (unsigned char)next)
                rt_exit_self(-EILSEQ); /* out of order or corrupted */
        seen += m->size;
        rt_msg_free(m); /* only now does the buffer go back to the ring */
        if (seen % 65536 < 4096)
            rt_sleep(1);
    }
    rt_send(report, 5, &seen, sizeof seen);
}

struct relay {
    rt_pid consumer;
};

static void relay_handle(void *st, rt_msg *m)
{
    struct relay *r = st;
    const rt_io_result *res = rt_io_result_of(m);
    if (res == NULL)
        return;
    if (res->op == RT_IO_ACCEPT && res->res >= 0) {
        int fd = rt_io_take_fd(m);
        rt_io_recv(fd, NULL, 0, 0, RT_IO_MULTISHOT | RT_IO_BUFSEL, NULL);
    } else if (res->op == RT_IO_RECV && res->res > 0) {
        rt_forward(r->consumer, m); /* holds the buffer until consumed */
        if (!(res->flags & RT_IO_F_MORE))
            rt_io_recv(res->fd, NULL, 0, 0, RT_IO_MULTISHOT | RT_IO_BUFSEL, NULL);
    }
}

static int relay_init(void *st, void *arg)
{
    struct relay *r = st;
    rt_pid *pids = arg;
    r->consumer = pids[1];
    uint16_t port;
    int l = listen_tcp(&port);
    rt_send(pids[0], 1, &port, sizeof port);
    return rt_io_accept(l, RT_IO_MULTISHOT, NULL);
}

static const rt_actor_ops relay_ops = {
    .state_size = sizeof(struct relay), .init = relay_init, .handle = relay_handle};

static void dry_body(void *arg)
{
    rt_pid pids[2] = {rt_self()}, relay;
    cr_assert_eq(rt_spawn(slow_consumer, &pids[0], NULL, &pids[1]), 0);
    cr_assert_eq(rt_spawn_actor(&relay_ops, pids, NULL, &relay), 0);
    rt_msg *m = test_recv_tag(1, 5000);
    uint16_t port = *(uint16_t *)m->data;
    rt_msg_free(m);
    int fd = connect_tcp(port);
    unsigned char *data = malloc(DRY_BYTES);
    for (size_t i = 0; i < DRY_BYTES; i++)
        data[i] = (unsigned char)i;
    cr_assert_eq(rt_send_all(fd, data, DRY_BYTES, 30000), (ssize_t)DRY_BYTES);
    free(data);
    m = test_recv_tag(5, 30000);
    cr_assert_eq(*(size_t *)m->data, DRY_BYTES);
    rt_msg_free(m);
    rt_exit(relay, RT_EXIT_KILL);
}

IO_TEST(ring_exhaustion_loses_nothing)
{
    /* 8 buffers of 4 KiB for a megabyte: the ring runs dry again and again */
    io_start(backend, 8, 4096);
    cr_assert_eq(test_run(dry_body, NULL, 60000), 0);
    test_stop();
}

/* ---- a process killed with requests in flight ------------------------------------------------ */

static _Atomic int victim_fd = -1;

static void victim(void *arg)
{
    uint16_t port = (uint16_t)(intptr_t)arg;
    int fd = connect_tcp(port);
    victim_fd = fd;
    char buf[16];
    rt_io_recv(fd, buf, sizeof buf, 0, 0, NULL); /* in flight, never completes */
    rt_recv(fd, buf, sizeof buf, RT_INFINITY);
}

static void kill_body(void *arg)
{
    uint16_t port;
    int l = listen_tcp(&port);
    rt_pid v;
    cr_assert_eq(rt_spawn(victim, (void *)(intptr_t)port, NULL, &v), 0);
    int peer = rt_accept(l, NULL, NULL, 5000);
    cr_assert_geq(peer, 0);
    rt_sleep(20);
    int fd = victim_fd;
    cr_assert_geq(fd, 0);
    rt_ref r;
    rt_monitor(v, &r);
    rt_exit(v, RT_EXIT_KILL);
    rt_msg_free(test_recv_tag(RT_MSG_DOWN, 5000));
    rt_sleep(20);
    /* its fd is closed: the peer sees the end of the stream */
    char c;
    cr_assert_eq(rt_recv(peer, &c, 1, 5000), 0, "the peer did not see the close");
}

IO_TEST(killed_with_requests_in_flight)
{
    io_start(backend, 0, 0);
    cr_assert_eq(test_run(kill_body, NULL, 30000), 0);
    test_stop(); /* checks fds and messages too */
}

/* ---- cancellation, timeouts, errors
 * ---------------------------------------------------------------- */

static void cancel_body(void *arg)
{
    uint16_t port;
    int l = listen_tcp(&port);
    int fd = connect_tcp(port);
    int peer = rt_accept(l, NULL, NULL, 5000);
    cr_assert_geq(peer, 0);
    char buf[16];
    rt_io_req req;
    cr_assert_eq(rt_io_recv(fd, buf, sizeof buf, 0, 0, &req), 0);
    cr_assert_eq(rt_io_cancel(req), 0);
    rt_msg *m = test_recv_tag(RT_MSG_IO, 5000);
    cr_assert_eq(rt_io_result_of(m)->req, req);
    cr_assert_eq(rt_io_result_of(m)->res, -ECANCELED);
    rt_msg_free(m);
    cr_assert_eq(rt_io_cancel(req), -ENOENT);
    /* a receive timeout, and the socket still works afterwards */
    int64_t t0 = rt_now_ms();
    cr_assert_eq(rt_recv(fd, buf, sizeof buf, 100), -ETIMEDOUT);
    int64_t dt = rt_now_ms() - t0;
    cr_assert_geq(dt, 100);
    cr_assert_leq(dt, 100 + 100, "timed out after %lld ms", (long long)dt);
    cr_assert_eq(rt_send_all(peer, "after", 5, 1000), 5);
    cr_assert_eq(rt_recv(fd, buf, sizeof buf, 1000), 5);
    cr_assert_eq(memcmp(buf, "after", 5), 0);
    cr_assert_eq(rt_accept(l, NULL, NULL, 50), -ETIMEDOUT);
}

IO_TEST(cancel_and_timeouts)
{
    io_start(backend, 0, 0);
    cr_assert_eq(test_run(cancel_body, NULL, 30000), 0);
    test_stop();
}

static void errors_body(void *arg)
{
    uint16_t port;
    int l = listen_tcp(&port);
    cr_assert_eq(rt_close(l), 0); /* nothing listens on port now */
    int fd = rt_socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = loopback(port);
    cr_assert_eq(rt_connect(fd, (struct sockaddr *)&a, sizeof a, 5000), -ECONNREFUSED);
    int pipefd[2];
    cr_assert_eq(pipe(pipefd), 0);
    char c;
    cr_assert_eq(rt_recv(pipefd[0], &c, 1, 1000), -ENOTSOCK);
    close(pipefd[0]);
    close(pipefd[1]);
    cr_assert_eq(rt_io_recv(-1, &c, 1, 0, 0, NULL), -EBADF);
    cr_assert_eq(rt_io_recv(fd, NULL, 1, 0, 0, NULL), -EINVAL);
    cr_assert_eq(rt_io_recv(fd, &c, 1, 0, RT_IO_MULTISHOT, NULL), -EINVAL);
    cr_assert_eq(rt_io_connect(fd, NULL, 0, NULL), -EINVAL);
    cr_assert_eq(rt_io_accept(fd, 0x80, NULL), -EINVAL);
    cr_assert_eq(rt_io_own(-5), -EBADF);
    cr_assert_eq(rt_io_own(fd), -EEXIST);
    cr_assert_eq(rt_io_disown(12345), -ENOENT);
    cr_assert_null(rt_io_result_of(NULL));
}

IO_TEST(errors_pass_through)
{
    io_start(backend, 0, 0);
    cr_assert_eq(test_run(errors_body, NULL, 30000), 0);
    test_stop();
}

static _Atomic int accepted_fd = -1;

static void dropper_handle(void *st, rt_msg *m)
{
    const rt_io_result *r = rt_io_result_of(m);
    if (r && r->op == RT_IO_ACCEPT && r->res >= 0)
        atomic_store(&accepted_fd, r->res); /* not taken: closed with m */
}

static int dropper_init(void *st, void *arg)
{
    return rt_io_accept(*(int *)arg, 0, NULL);
}

static const rt_actor_ops dropper_ops = {.init = dropper_init, .handle = dropper_handle};

static void dropped_body(void *arg)
{
    uint16_t port;
    int l = listen_tcp(&port);
    rt_pid d;
    cr_assert_eq(rt_spawn_actor(&dropper_ops, &l, NULL, &d), 0);
    int fd = connect_tcp(port);
    char c;
    cr_assert_eq(rt_recv(fd, &c, 1, 5000), 0, "an accepted fd left untaken was not closed");
    cr_assert_geq(atomic_load(&accepted_fd), 0);
    rt_exit(d, RT_EXIT_KILL);
}

IO_TEST(untaken_accepted_fd_is_closed)
{
    io_start(backend, 0, 0);
    cr_assert_eq(test_run(dropped_body, NULL, 30000), 0);
    test_stop();
}

IO_TEST(outside_a_process)
{
    io_start(backend, 0, 0);
    char c;
    cr_assert_eq(rt_io_recv(0, &c, 1, 0, 0, NULL), RT_ENOTPROC);
    cr_assert_eq(rt_recv(0, &c, 1, 0), RT_ENOTPROC);
    cr_assert_eq(rt_socket(AF_INET, SOCK_STREAM, 0), RT_ENOTPROC);
    cr_assert_eq(rt_io_cancel(1), RT_ENOTPROC);
    test_stop();
}

/* ---- waking a parked scheduler from another thread ----------------------------------------------
 */

static void waiter(void *arg)
{
    int64_t *lat = arg;
    for (int i = 0; i < 20; i++) {
        rt_msg *m = test_recv_tag(6, 5000);
        int64_t sent;
        memcpy(&sent, m->data, sizeof sent);
        int64_t us = (rt_now_ms() * 1000) - sent; /* coarse: ms resolution clock */
        if (us > *lat)
            *lat = us;
        rt_msg_free(m);
    }
}

IO_TEST(cross_thread_wakeup)
{
    io_start(backend, 0, 0);
    int64_t worst = 0;
    rt_pid w;
    cr_assert_eq(rt_spawn(waiter, &worst, &(rt_spawn_opts){.joinable = true}, &w), 0);
    for (int i = 0; i < 20; i++) {
        usleep(5000); /* let the scheduler park */
        int64_t now = rt_now_ms() * 1000;
        cr_assert_eq(rt_send(w, 6, &now, sizeof now), 0);
    }
    int reason;
    cr_assert_eq(rt_join(w, 10000, &reason), 0);
    cr_assert_eq(reason, 0);
    cr_log_info("%s: worst wake-up of a parked scheduler from main: under %lld ms", rt_io_backend(),
                (long long)(worst / 1000 + 1));
    cr_assert_lt(worst, 50000, "a wake-up took %lld us", (long long)worst);
    test_stop();
}

/* ---- poll, and multishot recvmsg into provided buffers ------------------------------------ */

static void poll_body(void *arg)
{
    int sv[2];
    cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    cr_assert_eq(rt_io_own(sv[0]), 0);
    cr_assert_eq(rt_io_own(sv[1]), 0);
    rt_io_req req;
    cr_assert_eq(rt_io_poll(sv[0], POLLIN, RT_IO_MULTISHOT, &req), 0);
    rt_msg *m;
    cr_assert_eq(rt_receive_tag(RT_MSG_IO, 50, &m), -ETIMEDOUT, "nothing to read yet");
    for (int i = 0; i < 3; i++) {
        cr_assert_eq(write(sv[1], "x", 1), 1);
        m = test_recv_tag(RT_MSG_IO, 5000);
        const rt_io_result *r = rt_io_result_of(m);
        cr_assert_eq(r->req, req);
        cr_assert(r->res & POLLIN, "poll result %#x", r->res);
        cr_assert(r->flags & RT_IO_F_MORE, "a multishot poll goes on");
        rt_msg_free(m);
        char c;
        cr_assert_eq(read(sv[0], &c, 1), 1);
    }
    cr_assert_eq(rt_io_cancel(req), 0);
    for (;;) { /* drain up to the last completion */
        m = test_recv_tag(RT_MSG_IO, 5000);
        bool last = !(rt_io_result_of(m)->flags & RT_IO_F_MORE);
        rt_msg_free(m);
        if (last)
            break;
    }
    cr_assert_eq(rt_io_poll(sv[1], POLLOUT, 0, &req), 0);
    m = test_recv_tag(RT_MSG_IO, 5000);
    cr_assert(rt_io_result_of(m)->res & POLLOUT);
    rt_msg_free(m);
}

IO_TEST(poll_single_and_multishot)
{
    io_start(backend, 0, 0);
    cr_assert_eq(test_run(poll_body, NULL, 30000), 0);
    test_stop();
}

static void recvmsg_body(void *arg)
{
    int a = rt_socket(AF_INET, SOCK_DGRAM, 0), b = rt_socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in aa = loopback(0), ba = loopback(0);
    socklen_t len = sizeof aa;
    cr_assert_eq(bind(a, (struct sockaddr *)&aa, sizeof aa), 0);
    cr_assert_eq(getsockname(a, (struct sockaddr *)&aa, &len), 0);
    cr_assert_eq(bind(b, (struct sockaddr *)&ba, sizeof ba), 0);
    len = sizeof ba;
    cr_assert_eq(getsockname(b, (struct sockaddr *)&ba, &len), 0);
    int on = 1;
    cr_assert_eq(setsockopt(b, IPPROTO_IP, IP_PKTINFO, &on, sizeof on), 0);
    /* a template: room for the peer address and one IP_PKTINFO cmsg */
    struct msghdr tmpl = {.msg_namelen = sizeof(struct sockaddr_in),
                          .msg_controllen = CMSG_SPACE(sizeof(struct in_pktinfo))};
    cr_assert_eq(rt_io_recvmsg(b, &tmpl, 0, RT_IO_MULTISHOT | RT_IO_BUFSEL, NULL), 0);
    for (int i = 0; i < 20; i++) {
        char out[32];
        int n = snprintf(out, sizeof out, "multishot %d", i);
        cr_assert_eq(sendto(a, out, (size_t)n, 0, (struct sockaddr *)&ba, sizeof ba), n);
        rt_msg *m = test_recv_tag(RT_MSG_IO, 5000);
        const rt_io_result *r = rt_io_result_of(m);
        cr_assert_eq(r->op, RT_IO_RECVMSG);
        cr_assert_eq(r->res, n, "payload length %d", r->res);
        cr_assert_eq(m->size, (uint32_t)n);
        cr_assert_eq(memcmp(m->data, out, (size_t)n), 0, "the payload, in the lent buffer");
        cr_assert_eq(r->namelen, sizeof(struct sockaddr_in));
        struct sockaddr_in from;
        memcpy(&from, r->name, sizeof from);
        cr_assert_eq(from.sin_port, aa.sin_port, "the sender's address");
        cr_assert_not_null(r->control);
        struct msghdr view = {.msg_control = r->control, .msg_controllen = r->controllen};
        struct cmsghdr *c = CMSG_FIRSTHDR(&view);
        cr_assert_not_null(c);
        cr_assert_eq(c->cmsg_level, IPPROTO_IP);
        cr_assert_eq(c->cmsg_type, IP_PKTINFO);
        if (!(r->flags & RT_IO_F_MORE)) /* the kernel ended it: start again */
            rt_io_recvmsg(b, &tmpl, 0, RT_IO_MULTISHOT | RT_IO_BUFSEL, NULL);
        rt_msg_free(m);
    }
}

IO_TEST(recvmsg_multishot_into_provided_buffers)
{
    io_start(backend, 0, 0);
    cr_assert_eq(test_run(recvmsg_body, NULL, 30000), 0);
    test_stop();
}
