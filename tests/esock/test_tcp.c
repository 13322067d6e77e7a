/* test_tcp: esock over TCP, natively (every kernel has TCP). The same
 * calls and messages as over SCTP (test_sctp.c); what differs is in
 * esock.h under "TCP". Every test proves at the end that the runtime and
 * esock gave everything back (processes, messages, timers, fds). */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <sys/resource.h>
#include <sys/socket.h>

#include <rt/io.h>

#include "es_test.h"

/* The runtime with `n` schedulers, and esock. ESOCK_TEST_IO=epoll runs
 * every test on the epoll backend (CTest's esock_tcp_epoll): the control
 * passes the same tests. */
static void es_start_n(unsigned n)
{
    const char *io = getenv("ESOCK_TEST_IO");
    test_start_opts(&(rt_opts){.schedulers = n,
                               .io = io && strcmp(io, "epoll") == 0 ? RT_IO_EPOLL : RT_IO_AUTO});
    int rc = esock_start();
    cr_assert_eq(rc, 0, "esock_start: %s", esock_strerror(rc));
}

static void es_start(void)
{
    es_start_n(2);
}

static esock_ep tcp_ep(const char *addr, uint16_t port, int framing)
{
    esock_ep_opts o = {.proto = ESOCK_TCP, .naddrs = 1, .port = port, .framing = framing};
    CHECK_RC(esock_addr_parse(addr, 0, &o.addrs[0]), 0);
    esock_ep ep;
    CHECK_RC(esock_ep_create(&o, &ep), 0);
    return ep;
}

/* A server endpoint owned by the caller, a client endpoint, and a
 * connection up between them. */
struct pair {
    esock_ep sep, cep;
    esock_assoc c, s;
};

static void connect_to(esock_ep cep, const char *addr, uint16_t port, esock_assoc *c,
                       esock_assoc *s)
{
    esock_addr ra;
    CHECK_RC(esock_addr_parse(addr, 0, &ra), 0);
    CHECK_RC(esock_assoc_create(cep, &ra, 1, port, NULL, c), 0);
    rt_msg *mc = wait_for(ESOCK_MSG_ASSOC_UP, *c);
    CHECK(esock_up_of(mc)->peer.port == port && esock_up_of(mc)->peer.ostreams == 1);
    rt_msg_free(mc);
    if (s == NULL)
        return;
    rt_msg *ms = wait_tag(ESOCK_MSG_ASSOC_UP); /* the server's side */
    *s = esock_up_of(ms)->assoc;
    CHECK(s->id != c->id);
    rt_msg_free(ms);
}

static void pair_up(const char *addr, int framing, struct pair *p)
{
    p->sep = tcp_ep(addr, 0, framing);
    p->cep = tcp_ep(addr, 0, framing);
    CHECK_RC(esock_owner_register(p->sep, rt_self(), NULL, NULL), 0);
    connect_to(p->cep, addr, (uint16_t)esock_ep_port(p->sep), &p->c, &p->s);
}

static void pair_close(struct pair *p)
{
    CHECK_RC(esock_ep_close(p->cep), 0);
    CHECK_RC(esock_ep_close(p->sep), 0);
    rt_msg_free(wait_tag(ESOCK_MSG_EP_DOWN)); /* the server's, to its owner */
}

/* Read from association `a` until `len` bytes have come; check them
 * against `want`; when `echo`, send each piece back on `a` as it comes.
 * Returns how many data messages they came in. */
static unsigned take_bytes(esock_assoc a, const unsigned char *want, size_t len, bool echo)
{
    size_t got = 0;
    unsigned msgs = 0;
    while (got < len) {
        rt_msg *m = wait_for(ESOCK_MSG_DATA, a);
        const esock_data *d = esock_data_of(m);
        CHECK(d->stream == 0 && d->ppid == 0 && d->assoc.id == a.id);
        CHECK(got + d->len <= len && memcmp(d->data, want + got, d->len) == 0);
        if (echo)
            CHECK_RC(esock_send(a, 0, 0, 0, d->data, d->len, NULL), 0);
        got += d->len;
        msgs++;
        rt_msg_free(m);
    }
    return msgs;
}

static unsigned read_bytes(esock_assoc a, const unsigned char *want, size_t len)
{
    return take_bytes(a, want, len, false);
}

/* ---- echo over a byte stream ------------------------------------------------------------------
 */

static void echo_body(void *arg)
{
    const char *addr = arg;
    struct pair p;
    pair_up(addr, ESOCK_FRAME_NONE, &p);
    /* stream 0 only; a ppid is not sent */
    CHECK_RC(esock_send(p.c, 1, 0, 0, "x", 1, NULL), ESOCK_EBADSTREAM);
    CHECK_RC(esock_send(p.c, 0, 0, 0, "", 0, NULL), -EMSGSIZE); /* no message, unframed */
    CHECK_RC(esock_send(p.c, 0, 99, ESOCK_UNORDERED, "hello", 5, NULL), 0);
    read_bytes(p.s, (const unsigned char *)"hello", 5);
    CHECK_RC(esock_send(p.s, 0, 0, 0, "olleh", 5, NULL), 0);
    read_bytes(p.c, (const unsigned char *)"olleh", 5);
    /* a megabyte both ways, in sends of every size, the server echoing it
     * as it comes: all of it, in order, and no more */
    static unsigned char big[1 << 20];
    for (size_t i = 0; i < sizeof big; i++)
        big[i] = (unsigned char)(i * 7 + i / 251);
    for (size_t off = 0, n = 1; off < sizeof big; off += n, n = n * 3 + 1) {
        if (off + n > sizeof big)
            n = sizeof big - off;
        CHECK_RC(esock_send(p.c, 0, 0, 0, big + off, n, NULL), 0);
    }
    take_bytes(p.s, big, sizeof big, true);
    read_bytes(p.c, big, sizeof big);
    rt_msg *m;
    CHECK(rt_receive_tag(ESOCK_MSG_DATA, 50, &m) == -ETIMEDOUT);
    /* queries */
    esock_assoc_info info;
    CHECK_RC(esock_assoc_status(p.c, &info), 0);
    CHECK(info.state == ESOCK_ASSOC_UP && info.kernel_state == 1 /* TCP_ESTABLISHED */);
    CHECK(info.ostreams == 1 && info.istreams == 1 && info.ep.id == p.cep.id);
    CHECK(info.peer.port == esock_ep_port(p.sep) && info.rto_ms > 0 && info.cwnd > 0);
    esock_path_info paths[2];
    CHECK_RC(esock_assoc_paths(p.s, paths, 2), 1);
    CHECK(paths[0].state == ESOCK_PATH_AVAILABLE && paths[0].primary && paths[0].mtu > 0);
    esock_assoc assocs[4];
    CHECK_RC(esock_ep_assocs(p.sep, assocs, 4), 1);
    CHECK(assocs[0].id == p.s.id);
    esock_addr la, ra;
    CHECK_RC(esock_addr_parse(addr, 0, &la), 0);
    ra = info.peer.addrs[0];
    esock_assoc found;
    CHECK(info.local_port != 0 && info.local_port != esock_ep_port(p.cep)); /* the kernel's pick */
    CHECK_RC(esock_assoc_find(&la, info.local_port, &ra, info.peer.port, &found), 0);
    CHECK(found.id == p.c.id);
    esock_assoc_info sinfo;
    CHECK_RC(esock_assoc_status(p.s, &sinfo), 0);
    CHECK(sinfo.local_port == esock_ep_port(p.sep) && sinfo.peer.port == info.local_port);
    CHECK_RC(esock_assoc_find(&la, sinfo.local_port, &sinfo.peer.addrs[0], sinfo.peer.port, &found),
             0);
    CHECK(found.id == p.s.id);
    esock_ep fe;
    CHECK_RC(esock_ep_find(ESOCK_TCP, &la, (uint16_t)esock_ep_port(p.sep), &fe), 0);
    CHECK(fe.id == p.sep.id);
    CHECK_RC(esock_ep_find(ESOCK_SCTP, &la, (uint16_t)esock_ep_port(p.sep), &fe), -ENOENT);

    /* a graceful end from the client: both told, then the handles are closed */
    CHECK_RC(esock_assoc_shutdown(p.c), 0);
    CHECK_RC(esock_send(p.c, 0, 0, 0, "late", 4, NULL), ESOCK_ECLOSED);
    m = wait_for(ESOCK_MSG_ASSOC_DOWN, p.s);
    CHECK(esock_down_of(m)->reason == ESOCK_DOWN_SHUTDOWN && esock_down_of(m)->error == 0);
    rt_msg_free(m);
    m = wait_for(ESOCK_MSG_ASSOC_DOWN, p.c);
    CHECK(esock_down_of(m)->reason == ESOCK_DOWN_SHUTDOWN && esock_down_of(m)->error == 0);
    rt_msg_free(m);
    CHECK_RC(esock_send(p.c, 0, 0, 0, "x", 1, NULL), ESOCK_ECLOSED);
    CHECK_RC(esock_assoc_status(p.s, &info), ESOCK_ECLOSED);
    pair_close(&p);
}

Test(esock_tcp, echo_a_byte_stream_ipv4)
{
    es_start();
    run(echo_body, "127.0.0.1");
    es_stop();
}

Test(esock_tcp, echo_a_byte_stream_ipv6)
{
    es_start();
    run(echo_body, "::1");
    es_stop();
}

/* ---- a peer that is only a socket
 * ---------------------------------------------------------------- */

/* A plain TCP socket connected to addr:port (loopback: connect does not
 * wait for the accept). */
static int raw_connect(const char *addr, uint16_t port)
{
    esock_addr a;
    CHECK_RC(esock_addr_parse(addr, port, &a), 0);
    int fd = socket(a.sa.sa_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    CHECK(fd >= 0);
    CHECK(connect(fd, &a.sa, a.sa.sa_family == AF_INET ? sizeof a.in4 : sizeof a.in6) == 0);
    int one = 1;
    CHECK(setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) == 0);
    return fd;
}

/* A plain listening socket on 127.0.0.1, non-blocking (raw_accept takes
 * its connections without blocking the scheduler); its port in *port. */
static int raw_listen(uint16_t *port)
{
    esock_addr a;
    CHECK_RC(esock_addr_parse("127.0.0.1", 0, &a), 0);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    socklen_t l = sizeof a.in4;
    CHECK(fd >= 0 && bind(fd, &a.sa, sizeof a.in4) == 0 && listen(fd, 8) == 0 &&
          getsockname(fd, &a.sa, &l) == 0);
    *port = ntohs(a.in4.sin_port);
    return fd;
}

/* Accept one connection from raw_listen's `l` within 10 s, without
 * blocking the scheduler. */
static int raw_accept(int l)
{
    for (int i = 0; i < 1000; i++) {
        int fd = accept4(l, NULL, NULL, SOCK_CLOEXEC);
        if (fd >= 0)
            return fd;
        CHECK(errno == EAGAIN || errno == EWOULDBLOCK);
        rt_sleep(10);
    }
    CHECK(!"no connection within 10 s");
    return -1;
}

static void raw_write(int fd, const void *p, size_t n)
{
    CHECK(write(fd, p, n) == (ssize_t)n);
}

/* Read exactly n bytes within 10 s, without blocking the scheduler. */
static void raw_read(int fd, void *p, size_t n)
{
    size_t got = 0;
    for (int i = 0; got < n && i < 1000; i++) {
        ssize_t r = recv(fd, (char *)p + got, n - got, MSG_DONTWAIT);
        if (r > 0)
            got += (size_t)r;
        else if (r == 0 || (errno != EAGAIN && errno != EWOULDBLOCK))
            break;
        else
            rt_sleep(10);
    }
    CHECK(got == n);
}

/* What the peer's socket sees next: 0 for its end, -errno, or 1 (data). */
static int raw_end(int fd)
{
    char c;
    for (int i = 0; i < 1000; i++) {
        ssize_t r = recv(fd, &c, 1, MSG_DONTWAIT);
        if (r >= 0)
            return r == 0 ? 0 : 1;
        if (errno != EAGAIN && errno != EWOULDBLOCK)
            return -errno;
        rt_sleep(10);
    }
    return -ETIMEDOUT;
}

static void frame(unsigned char *out, const void *p, uint32_t n)
{
    uint32_t be = htonl(n);
    memcpy(out, &be, 4);
    memcpy(out + 4, p, n);
}

static void want_msg(esock_assoc a, const void *p, size_t n)
{
    rt_msg *m = wait_for(ESOCK_MSG_DATA, a);
    const esock_data *d = esock_data_of(m);
    CHECK(d->len == n && (n == 0 || memcmp(d->data, p, n) == 0));
    CHECK(d->stream == 0 && d->ppid == 0);
    rt_msg_free(m);
}

/* ---- framing: whole messages, however the bytes come --------------------------------------------
 */

static void framing_body(void *arg)
{
    struct pair p;
    pair_up("127.0.0.1", ESOCK_FRAME_LEN32, &p);
    /* esock to esock: every size arrives whole, one message each */
    static unsigned char big[(1 << 20) + 3];
    for (size_t i = 0; i < sizeof big; i++)
        big[i] = (unsigned char)(i ^ (i >> 9));
    const size_t sizes[] = {1, 3, 100, 2047, 2048, 4096, 65536, 65537, 300000, sizeof big};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++)
        CHECK_RC(esock_send(p.c, 0, 0, 0, big, sizes[i], NULL), 0);
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++)
        want_msg(p.s, big, sizes[i]);
    /* framed, an empty message is one too */
    CHECK_RC(esock_send(p.c, 0, 0, 0, "", 0, NULL), 0);
    want_msg(p.s, "", 0);

    /* a plain socket: several messages in one write, one message (and its
     * length) cut into pieces written apart, an empty message */
    uint16_t port = (uint16_t)esock_ep_port(p.sep);
    int fd = raw_connect("127.0.0.1", port);
    rt_msg *m = wait_tag(ESOCK_MSG_ASSOC_UP);
    esock_assoc r = esock_up_of(m)->assoc;
    rt_msg_free(m);
    unsigned char wire[64];
    frame(wire, "one", 3);
    frame(wire + 7, "two", 3);
    frame(wire + 14, "", 0);
    frame(wire + 18, "three", 5);
    raw_write(fd, wire, 27);
    want_msg(r, "one", 3);
    want_msg(r, "two", 3);
    want_msg(r, "", 0);
    want_msg(r, "three", 5);
    unsigned char *cut = malloc(4 + 70000);
    CHECK(cut != NULL);
    frame(cut, big, 70000);
    raw_write(fd, cut, 2); /* half of the length */
    rt_sleep(20);
    raw_write(fd, cut + 2, 3000);
    rt_sleep(20);
    raw_write(fd, cut + 3002, 4 + 70000 - 3002);
    want_msg(r, big, 70000);
    CHECK(rt_receive_tag(ESOCK_MSG_DATA, 50, &m) == -ETIMEDOUT); /* nothing more */
    /* and back: each message after its length */
    CHECK_RC(esock_send(r, 0, 0, 0, "echo", 4, NULL), 0);
    CHECK_RC(esock_send(r, 0, 0, 0, big, 70000, NULL), 0);
    unsigned char hdr[4], *back = malloc(70000);
    CHECK(back != NULL);
    raw_read(fd, hdr, 4);
    CHECK(hdr[0] == 0 && hdr[1] == 0 && hdr[2] == 0 && hdr[3] == 4);
    raw_read(fd, back, 4);
    CHECK(memcmp(back, "echo", 4) == 0);
    raw_read(fd, hdr, 4);
    CHECK(((uint32_t)hdr[1] << 16 | (uint32_t)hdr[2] << 8 | hdr[3]) == 70000 && hdr[0] == 0);
    raw_read(fd, back, 70000);
    CHECK(memcmp(back, big, 70000) == 0);
    free(back);
    /* the peer ends inside a message: it is shut down, and says so */
    raw_write(fd, cut, 100);
    free(cut);
    shutdown(fd, SHUT_WR);
    m = wait_for(ESOCK_MSG_ASSOC_DOWN, r);
    CHECK(esock_down_of(m)->reason == ESOCK_DOWN_SHUTDOWN && esock_down_of(m)->error == -EPROTO);
    rt_msg_free(m);
    CHECK(raw_end(fd) == 0);
    close(fd);
    pair_close(&p);
}

Test(esock_tcp, framing_whole_messages_however_the_bytes_come)
{
    es_start();
    run(framing_body, NULL);
    es_stop();
}

static void max_msg_body(void *arg)
{
    esock_ep_opts o = {.proto = ESOCK_TCP, .framing = ESOCK_FRAME_LEN32, .max_msg = 1000};
    esock_ep sep;
    CHECK_RC(esock_ep_create(&o, &sep), 0);
    CHECK_RC(esock_owner_register(sep, rt_self(), NULL, NULL), 0);
    int fd = raw_connect("127.0.0.1", (uint16_t)esock_ep_port(sep));
    rt_msg *m = wait_tag(ESOCK_MSG_ASSOC_UP);
    esock_assoc r = esock_up_of(m)->assoc;
    rt_msg_free(m);
    static unsigned char msg[1004];
    frame(msg, msg + 4, 1000); /* the largest allowed */
    raw_write(fd, msg, sizeof msg);
    want_msg(r, msg + 4, 1000);
    uint32_t be = htonl(1001); /* one too many */
    raw_write(fd, &be, 4);
    m = wait_for(ESOCK_MSG_ASSOC_DOWN, r);
    CHECK(esock_down_of(m)->reason == ESOCK_DOWN_PROTOCOL && esock_down_of(m)->error == -EMSGSIZE);
    CHECK(strcmp(esock_down_reason_name(ESOCK_DOWN_PROTOCOL), "protocol") == 0);
    rt_msg_free(m);
    CHECK(raw_end(fd) == -ECONNRESET); /* reset, not a quiet end */
    close(fd);
    CHECK_RC(esock_ep_close(sep), 0);
    rt_msg_free(wait_tag(ESOCK_MSG_EP_DOWN));
}

Test(esock_tcp, a_length_beyond_max_msg_resets_the_connection)
{
    es_start();
    run(max_msg_body, NULL);
    es_stop();
}

/* ---- owners: waiting for the first, accept callbacks, a refused connection ---------------------
 */

static _Atomic int asked[2];

static bool accept_if(void *arg, esock_assoc a, const esock_peer *peer)
{
    int i = (int)(intptr_t)arg;
    asked[i]++;
    return i == 1 && peer->naddrs == 1 && peer->port != 0;
}

static bool reject_all(void *arg, esock_assoc a, const esock_peer *peer)
{
    return false;
}

/* Forwards what it gets to the test process until a message with tag 1. */
static void other_owner(void *arg)
{
    rt_msg *m;
    while (rt_receive(RT_INFINITY, &m) == 0) {
        if (m->tag == 1) {
            rt_msg_free(m);
            return;
        }
        rt_forward(*(rt_pid *)arg, m);
    }
}

static void owners_body(void *arg)
{
    esock_ep sep = tcp_ep("127.0.0.1", 0, ESOCK_FRAME_LEN32);
    esock_ep cep = tcp_ep("127.0.0.1", 0, ESOCK_FRAME_LEN32);
    uint16_t port = (uint16_t)esock_ep_port(sep);
    /* nobody owns the server yet: the connection waits in the backlog, and
     * what the client sends waits with it */
    esock_assoc c;
    connect_to(cep, "127.0.0.1", port, &c, NULL);
    CHECK_RC(esock_send(c, 0, 0, 0, "early", 5, NULL), 0);
    rt_msg *m;
    CHECK(rt_receive_tag(ESOCK_MSG_ASSOC_UP, 100, &m) == -ETIMEDOUT);
    CHECK_RC(esock_ep_assocs(sep, NULL, 0), 0);
    CHECK_RC(esock_owner_register(sep, rt_self(), NULL, NULL), 0);
    CHECK_RC(esock_owner_register(sep, rt_self(), NULL, NULL), -EEXIST);
    m = wait_tag(ESOCK_MSG_ASSOC_UP);
    esock_assoc s = esock_up_of(m)->assoc;
    rt_msg_free(m);
    want_msg(s, "early", 5);

    /* a newer owner is asked first; the first yes wins */
    rt_pid me = rt_self(), o1;
    CHECK_RC(rt_spawn(other_owner, &me, NULL, &o1), 0);
    CHECK_RC(esock_owner_register(sep, o1, accept_if, (void *)(intptr_t)1), 0);
    esock_assoc c2, s2;
    connect_to(cep, "127.0.0.1", port, &c2, &s2); /* its UP forwarded by o1 */
    CHECK(asked[1] == 1);
    esock_assoc_info info;
    CHECK_RC(esock_assoc_status(s2, &info), 0);
    CHECK(info.owner.id == o1.id && info.peer.naddrs == 1);
    /* its owner ends: its connection is closed, gracefully; the other stays */
    rt_send(o1, 1, NULL, 0);
    m = wait_for(ESOCK_MSG_ASSOC_DOWN, c2);
    CHECK(esock_down_of(m)->reason == ESOCK_DOWN_SHUTDOWN);
    rt_msg_free(m);
    CHECK_RC(esock_send(c, 0, 0, 0, "still", 5, NULL), 0);
    want_msg(s, "still", 5);

    /* an owner that takes nothing: the connection is reset */
    CHECK_RC(esock_owner_unregister(sep, rt_self()), 0);
    CHECK_RC(esock_owner_unregister(sep, rt_self()), ESOCK_ENOOWNER);
    CHECK_RC(esock_owner_register(sep, rt_self(), reject_all, NULL), 0);
    esock_assoc c3;
    connect_to(cep, "127.0.0.1", port, &c3, NULL);
    m = wait_for(ESOCK_MSG_ASSOC_DOWN, c3);
    CHECK(esock_down_of(m)->reason == ESOCK_DOWN_ABORT && esock_down_of(m)->error == -ECONNRESET);
    rt_msg_free(m);
    /* the endpoint closes: its connections end, its owners are told */
    CHECK_RC(esock_ep_close(sep), 0);
    m = wait_for(ESOCK_MSG_ASSOC_DOWN, s);
    CHECK(esock_down_of(m)->reason == ESOCK_DOWN_ENDPOINT);
    rt_msg_free(m);
    rt_msg_free(wait_tag(ESOCK_MSG_EP_DOWN));
    m = wait_for(ESOCK_MSG_ASSOC_DOWN, c);
    CHECK(esock_down_of(m)->reason == ESOCK_DOWN_ABORT);
    rt_msg_free(m);
    CHECK_RC(esock_ep_close(cep), 0);
    CHECK_RC(esock_ep_close(sep), ESOCK_ESTALE);
}

Test(esock_tcp, owners_accept_callbacks_and_data_before_the_first_owner)
{
    es_start();
    run(owners_body, NULL);
    es_stop();
}

/* ---- ends from either side: shutdown, abort, the peer's FIN and reset --------------------------
 */

static void ends_body(void *arg)
{
    struct pair p;
    pair_up("127.0.0.1", ESOCK_FRAME_NONE, &p);
    /* an abort from the server: both told */
    CHECK_RC(esock_assoc_abort(p.s), 0);
    rt_msg *m = wait_for(ESOCK_MSG_ASSOC_DOWN, p.s);
    CHECK(esock_down_of(m)->reason == ESOCK_DOWN_ABORT);
    rt_msg_free(m);
    m = wait_for(ESOCK_MSG_ASSOC_DOWN, p.c);
    CHECK(esock_down_of(m)->reason == ESOCK_DOWN_ABORT && esock_down_of(m)->error == -ECONNRESET);
    rt_msg_free(m);
    CHECK_RC(esock_assoc_abort(p.s), ESOCK_ECLOSED);
    CHECK_RC(esock_assoc_shutdown(p.c), ESOCK_ECLOSED);
    /* a shutdown from the server, with data still going both ways: what was
     * sent before it arrives first */
    uint16_t port = (uint16_t)esock_ep_port(p.sep);
    connect_to(p.cep, "127.0.0.1", port, &p.c, &p.s);
    CHECK_RC(esock_send(p.s, 0, 0, 0, "bye", 3, NULL), 0);
    CHECK_RC(esock_assoc_shutdown(p.s), 0);
    read_bytes(p.c, (const unsigned char *)"bye", 3);
    /* the client's side ends with the server's FIN, and closes in turn */
    m = wait_for(ESOCK_MSG_ASSOC_DOWN, p.c);
    CHECK(esock_down_of(m)->reason == ESOCK_DOWN_SHUTDOWN);
    rt_msg_free(m);
    m = wait_for(ESOCK_MSG_ASSOC_DOWN, p.s);
    CHECK(esock_down_of(m)->reason == ESOCK_DOWN_SHUTDOWN && esock_down_of(m)->error == 0);
    rt_msg_free(m);
    /* a plain peer: its FIN ends it after its data; its reset is an abort */
    int fd = raw_connect("127.0.0.1", port);
    m = wait_tag(ESOCK_MSG_ASSOC_UP);
    esock_assoc r = esock_up_of(m)->assoc;
    rt_msg_free(m);
    raw_write(fd, "abc", 3);
    shutdown(fd, SHUT_WR);
    read_bytes(r, (const unsigned char *)"abc", 3);
    m = wait_for(ESOCK_MSG_ASSOC_DOWN, r);
    CHECK(esock_down_of(m)->reason == ESOCK_DOWN_SHUTDOWN && esock_down_of(m)->error == 0);
    rt_msg_free(m);
    CHECK(raw_end(fd) == 0);
    close(fd);
    fd = raw_connect("127.0.0.1", port);
    m = wait_tag(ESOCK_MSG_ASSOC_UP);
    r = esock_up_of(m)->assoc;
    rt_msg_free(m);
    struct linger l = {1, 0};
    CHECK(setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof l) == 0);
    close(fd);
    m = wait_for(ESOCK_MSG_ASSOC_DOWN, r);
    CHECK(esock_down_of(m)->reason == ESOCK_DOWN_ABORT && esock_down_of(m)->error == -ECONNRESET);
    rt_msg_free(m);
    /* a shutdown the plain peer answers with data, then its FIN */
    fd = raw_connect("127.0.0.1", port);
    m = wait_tag(ESOCK_MSG_ASSOC_UP);
    r = esock_up_of(m)->assoc;
    rt_msg_free(m);
    CHECK_RC(esock_assoc_shutdown(r), 0);
    CHECK(raw_end(fd) == 0);
    raw_write(fd, "reply", 5);
    shutdown(fd, SHUT_WR);
    read_bytes(r, (const unsigned char *)"reply", 5);
    m = wait_for(ESOCK_MSG_ASSOC_DOWN, r);
    CHECK(esock_down_of(m)->reason == ESOCK_DOWN_SHUTDOWN && esock_down_of(m)->error == 0);
    rt_msg_free(m);
    close(fd);
    /* a peer that never ends its side: the shutdown gives up after 10 s */
    fd = raw_connect("127.0.0.1", port);
    m = wait_tag(ESOCK_MSG_ASSOC_UP);
    r = esock_up_of(m)->assoc;
    rt_msg_free(m);
    int64_t t0 = rt_now_ms();
    CHECK_RC(esock_assoc_shutdown(r), 0);
    CHECK(raw_end(fd) == 0); /* its FIN; what the peer sends still arrives */
    raw_write(fd, "more", 4);
    read_bytes(r, (const unsigned char *)"more", 4);
    m = NULL;
    CHECK(rt_receive_tag(ESOCK_MSG_ASSOC_DOWN, 12000, &m) == 0);
    CHECK(esock_down_of(m)->reason == ESOCK_DOWN_SHUTDOWN && esock_down_of(m)->error == -ETIMEDOUT);
    CHECK(rt_now_ms() - t0 >= 9900);
    rt_msg_free(m);
    close(fd);
    pair_close(&p);
}

Test(esock_tcp, ends_from_either_side, .timeout = 60)
{
    es_start();
    run(ends_body, NULL);
    es_stop();
}

/* ---- reconnection: a late peer, a restarted one, addresses in turn -----------------------------
 */

static void reconnect_body(void *arg)
{
    /* a port nobody listens on, yet */
    esock_ep sep = tcp_ep("127.0.0.1", 0, ESOCK_FRAME_LEN32);
    uint16_t port = (uint16_t)esock_ep_port(sep);
    CHECK_RC(esock_ep_close(sep), 0);
    esock_ep cep = tcp_ep("127.0.0.1", 0, ESOCK_FRAME_LEN32);
    esock_addr ra[2];
    CHECK_RC(esock_addr_parse("127.0.0.1", 0, &ra[0]), 0);
    esock_assoc_opts ao = {.reconnect = {.max_attempts = 50, .min_ms = 40, .max_ms = 160}};
    esock_assoc c;
    CHECK_RC(esock_assoc_create(cep, ra, 1, port, &ao, &c), 0);
    /* refused at once: told, and tried again after a delay, not in a loop */
    rt_msg *m = wait_for(ESOCK_MSG_ASSOC_DOWN, c);
    CHECK(esock_down_of(m)->reason == ESOCK_DOWN_CANT_START && esock_down_of(m)->reconnecting &&
          esock_down_of(m)->error == -ECONNREFUSED);
    rt_msg_free(m);
    m = wait_for(ESOCK_MSG_RECONNECT, c);
    CHECK(esock_reconnect_of(m)->attempt == 1 && esock_reconnect_of(m)->delay_ms >= 20 &&
          esock_reconnect_of(m)->delay_ms <= 40);
    rt_msg_free(m);
    CHECK_RC(esock_send(c, 0, 0, 0, "x", 1, NULL), ESOCK_ENOTUP);
    m = wait_for(ESOCK_MSG_RECONNECT, c);
    CHECK(esock_reconnect_of(m)->attempt == 2);
    rt_msg_free(m);
    /* the server comes up late, on that port */
    esock_ep_opts so = {.proto = ESOCK_TCP, .port = port, .framing = ESOCK_FRAME_LEN32};
    CHECK_RC(esock_ep_create(&so, &sep), 0);
    CHECK_RC(esock_owner_register(sep, rt_self(), NULL, NULL), 0);
    rt_msg_free(wait_for(ESOCK_MSG_ASSOC_UP, c));
    m = wait_tag(ESOCK_MSG_ASSOC_UP);
    esock_assoc s = esock_up_of(m)->assoc;
    rt_msg_free(m);
    while (rt_receive_tag(ESOCK_MSG_ASSOC_DOWN, 0, &m) == 0)
        rt_msg_free(m);
    while (rt_receive_tag(ESOCK_MSG_RECONNECT, 0, &m) == 0)
        rt_msg_free(m);
    CHECK_RC(esock_send(c, 0, 0, 0, "again", 5, NULL), 0);
    want_msg(s, "again", 5);

    /* the server restarts: the same handle comes back up */
    CHECK_RC(esock_ep_close(sep), 0);
    rt_msg_free(wait_tag(ESOCK_MSG_EP_DOWN));
    rt_msg_free(wait_for(ESOCK_MSG_ASSOC_DOWN, s));
    m = wait_for(ESOCK_MSG_ASSOC_DOWN, c);
    CHECK(esock_down_of(m)->reconnecting);
    rt_msg_free(m);
    CHECK_RC(esock_ep_create(&so, &sep), 0);
    CHECK_RC(esock_owner_register(sep, rt_self(), NULL, NULL), 0);
    rt_msg_free(wait_for(ESOCK_MSG_ASSOC_UP, c));
    m = wait_tag(ESOCK_MSG_ASSOC_UP);
    s = esock_up_of(m)->assoc;
    rt_msg_free(m);
    CHECK_RC(esock_send(c, 0, 0, 0, "third", 5, NULL), 0);
    want_msg(s, "third", 5);
    /* the server ends it (its FIN): the client reconnects after that too */
    CHECK_RC(esock_assoc_shutdown(s), 0);
    m = wait_for(ESOCK_MSG_ASSOC_DOWN, c);
    CHECK(esock_down_of(m)->reason == ESOCK_DOWN_SHUTDOWN && esock_down_of(m)->reconnecting);
    rt_msg_free(m);
    rt_msg_free(wait_for(ESOCK_MSG_ASSOC_DOWN, s));
    rt_msg_free(wait_for(ESOCK_MSG_ASSOC_UP, c));
    m = wait_tag(ESOCK_MSG_ASSOC_UP);
    s = esock_up_of(m)->assoc;
    rt_msg_free(m);
    /* its own shutdown ends it for good */
    while (rt_receive_tag(ESOCK_MSG_RECONNECT, 0, &m) == 0)
        rt_msg_free(m);
    CHECK_RC(esock_assoc_shutdown(c), 0);
    m = wait_for(ESOCK_MSG_ASSOC_DOWN, c);
    CHECK(esock_down_of(m)->reason == ESOCK_DOWN_SHUTDOWN && !esock_down_of(m)->reconnecting);
    rt_msg_free(m);
    rt_msg_free(wait_for(ESOCK_MSG_ASSOC_DOWN, s));
    CHECK_RC(esock_send(c, 0, 0, 0, "x", 1, NULL), ESOCK_ECLOSED);

    /* several remote addresses: tried in turn; up on the one that answers */
    CHECK_RC(esock_addr_parse("127.0.0.2", 0, &ra[0]), 0); /* nobody there */
    CHECK_RC(esock_addr_parse("127.0.0.1", 0, &ra[1]), 0);
    CHECK_RC(esock_assoc_create(cep, ra, 2, port, NULL, &c), 0);
    m = wait_for(ESOCK_MSG_ASSOC_UP, c);
    CHECK(esock_up_of(m)->peer.naddrs == 1 &&
          esock_up_of(m)->peer.addrs[0].in4.sin_addr.s_addr == htonl(INADDR_LOOPBACK));
    rt_msg_free(m);
    m = wait_tag(ESOCK_MSG_ASSOC_UP);
    s = esock_up_of(m)->assoc;
    rt_msg_free(m);
    CHECK_RC(esock_assoc_abort(c), 0);
    rt_msg_free(wait_for(ESOCK_MSG_ASSOC_DOWN, c));
    rt_msg_free(wait_for(ESOCK_MSG_ASSOC_DOWN, s));

    /* a server that never comes back: it gives up after max_attempts */
    CHECK_RC(esock_ep_close(sep), 0);
    rt_msg_free(wait_tag(ESOCK_MSG_EP_DOWN));
    esock_assoc_opts few = {.reconnect = {.max_attempts = 2, .min_ms = 10, .max_ms = 20}};
    CHECK_RC(esock_assoc_create(cep, ra, 2, port, &few, &c), 0);
    for (unsigned k = 1; k <= 2; k++) {
        m = wait_for(ESOCK_MSG_ASSOC_DOWN, c);
        CHECK(esock_down_of(m)->reconnecting);
        rt_msg_free(m);
        m = wait_for(ESOCK_MSG_RECONNECT, c);
        CHECK(esock_reconnect_of(m)->attempt == k && !esock_reconnect_of(m)->gave_up);
        rt_msg_free(m);
    }
    m = wait_for(ESOCK_MSG_RECONNECT, c);
    CHECK(esock_reconnect_of(m)->gave_up);
    rt_msg_free(m);
    m = wait_for(ESOCK_MSG_ASSOC_DOWN, c);
    CHECK(esock_down_of(m)->reason == ESOCK_DOWN_CANT_START && !esock_down_of(m)->reconnecting);
    rt_msg_free(m);
    CHECK_RC(esock_assoc_abort(c), ESOCK_ECLOSED);
    CHECK_RC(esock_ep_close(cep), 0);
}

Test(esock_tcp, reconnect_to_a_late_and_a_restarted_server)
{
    es_start();
    run(reconnect_body, NULL);
    es_stop();
}

/* ---- backpressure both ways, and what was never sent coming back -------------------------------
 */

/* Holds every data message it gets until told (tag 2) to free them; then
 * frees whatever comes; counts and checks the sequence numbers. */
struct holder {
    rt_pid test;
    _Atomic unsigned long got;
    _Atomic bool in_order;
};

static void holder(void *arg)
{
    struct holder *h = arg;
    rt_msg *held[4096];
    unsigned nheld = 0;
    bool hold = true;
    rt_msg *m;
    h->in_order = true;
    while (rt_receive(RT_INFINITY, &m) == 0) {
        if (m->tag == 1) {
            rt_msg_free(m);
            break;
        }
        if (m->tag == 2) {
            hold = false;
            while (nheld)
                rt_msg_free(held[--nheld]);
            rt_msg_free(m);
            continue;
        }
        const esock_data *d = esock_data_of(m);
        if (d == NULL) {
            rt_forward(h->test, m);
            continue;
        }
        uint32_t seq;
        memcpy(&seq, d->data, sizeof seq);
        h->in_order = h->in_order && seq == h->got;
        h->got++;
        if (hold && nheld < 4096)
            held[nheld++] = m;
        else
            rt_msg_free(m);
    }
    while (nheld)
        rt_msg_free(held[--nheld]);
}

/* A framed pair whose server stops reading once its owner, a holder,
 * holds 64 KiB of messages; the client's queue takes send_hiwat. */
struct stalled {
    esock_ep sep, cep;
    rt_pid holder;
    esock_assoc c;
};

static void stalled_pair(struct holder *h, size_t send_hiwat, struct stalled *p)
{
    esock_ep_opts so = {.proto = ESOCK_TCP,
                        .framing = ESOCK_FRAME_LEN32,
                        .rcv_hiwat = 64 << 10,
                        .rcvbuf = 64 << 10};
    CHECK_RC(esock_ep_create(&so, &p->sep), 0);
    esock_ep_opts co = {.proto = ESOCK_TCP,
                        .framing = ESOCK_FRAME_LEN32,
                        .send_hiwat = send_hiwat,
                        .sndbuf = 64 << 10};
    CHECK_RC(esock_ep_create(&co, &p->cep), 0);
    CHECK_RC(rt_spawn(holder, h, NULL, &p->holder), 0);
    CHECK_RC(esock_owner_register(p->sep, p->holder, NULL, NULL), 0);
    connect_to(p->cep, "127.0.0.1", (uint16_t)esock_ep_port(p->sep), &p->c, NULL);
    rt_msg_free(wait_tag(ESOCK_MSG_ASSOC_UP)); /* the server's, forwarded */
}

static void backpressure_body(void *arg)
{
    struct holder h = {.test = rt_self()};
    struct stalled p;
    stalled_pair(&h, 256 << 10, &p);
    esock_ep sep = p.sep, cep = p.cep;
    rt_pid hp = p.holder;
    esock_assoc c = p.c;
    /* send until the queue is full: a clear refusal, nothing dropped */
    static unsigned char msg[1000];
    uint32_t seq = 0;
    int rc = 0;
    for (int i = 0; i < 100000 && rc == 0; i++) {
        memcpy(msg, &seq, sizeof seq);
        rc = esock_send(c, 0, 0, 0, msg, sizeof msg, NULL);
        if (rc == 0)
            seq++;
    }
    CHECK_RC(rc, ESOCK_EWOULDBLOCK);
    esock_assoc_info info;
    CHECK_RC(esock_assoc_status(c, &info), 0);
    CHECK(info.queued > (200u << 10) && info.queued <= (257u << 10));
    rt_msg *m;
    CHECK(rt_receive_tag(ESOCK_MSG_SEND_READY, 200, &m) == -ETIMEDOUT); /* held back */
    /* the owner lets go: everything arrives, and the sender may go on */
    rt_send(hp, 2, NULL, 0);
    m = wait_tag(ESOCK_MSG_SEND_READY);
    CHECK(esock_send_ready_of(m)->assoc.id == c.id);
    rt_msg_free(m);
    for (int i = 0; i < 1000 && h.got < seq; i++)
        rt_sleep(10);
    CHECK(h.got == seq && h.in_order);
    memcpy(msg, &seq, sizeof seq);
    CHECK_RC(esock_send(c, 0, 0, 0, msg, sizeof msg, NULL), 0);
    seq++;
    for (int i = 0; i < 1000 && h.got < seq; i++)
        rt_sleep(10);
    CHECK(h.got == seq && h.in_order);
    rt_send(hp, 1, NULL, 0);
    CHECK_RC(esock_ep_close(cep), 0);
    CHECK_RC(esock_ep_close(sep), 0);
}

Test(esock_tcp, backpressure_would_block_then_send_ready)
{
    es_start();
    run(backpressure_body, NULL);
    es_stop();
}

static void handback_body(void *arg)
{
    /* a server whose owner holds everything: the client's queue fills */
    struct holder h = {.test = rt_self()};
    struct stalled p;
    stalled_pair(&h, 64 << 10, &p);
    esock_ep sep = p.sep, cep = p.cep;
    rt_pid hp = p.holder;
    esock_assoc c = p.c;
    static unsigned char msg[3000];
    uint32_t seq = 0;
    int rc = 0;
    for (int i = 0; i < 100000 && rc == 0; i++) {
        memcpy(msg, &seq, sizeof seq);
        rc = esock_send(c, 0, 0, 0, msg, sizeof msg, &(esock_send_opts){.context = seq});
        if (rc == 0)
            seq++;
    }
    CHECK_RC(rc, ESOCK_EWOULDBLOCK);
    /* it ends: what never went out comes back, in order, whole; only the
     * first may have gone out in part */
    CHECK_RC(esock_assoc_abort(c), 0);
    uint32_t first = 0, n = 0;
    for (;;) {
        rt_msg *m = NULL;
        CHECK(rt_receive(10000, &m) == 0);
        if (m->tag == ESOCK_MSG_ASSOC_DOWN) {
            CHECK(esock_down_of(m)->assoc.id == c.id &&
                  esock_down_of(m)->reason == ESOCK_DOWN_ABORT);
            rt_msg_free(m);
            break;
        }
        const esock_send_failed *f = esock_send_failed_of(m);
        CHECK(f != NULL && f->assoc.id == c.id && f->len == sizeof msg);
        uint32_t v;
        memcpy(&v, f->data, sizeof v);
        CHECK(v == f->context && f->error == ESOCK_ECLOSED);
        if (n == 0)
            first = v;
        else
            CHECK(v == first + n && !f->on_wire);
        n++;
        rt_msg_free(m);
    }
    CHECK(n > 0 && first + n == seq);
    rt_send(hp, 1, NULL, 0);
    CHECK_RC(esock_ep_close(cep), 0);
    CHECK_RC(esock_ep_close(sep), 0);
}

Test(esock_tcp, unsent_messages_are_handed_back_in_order)
{
    es_start();
    run(handback_body, NULL);
    es_stop();
}

/* ---- peers that are not ours: a Python script (framed) and nc (a byte stream) ------------------
 */

#ifndef TCP_PEER_PY
#error "TCP_PEER_PY: the path of tests/esock/tcp_peer.py (set by CMake)"
#endif

/* The child's exit status, waiting without blocking the scheduler (10 s). */
static int child_status(pid_t pid)
{
    int status = -1;
    for (int i = 0; i < 1000; i++) {
        if (waitpid(pid, &status, WNOHANG) == pid)
            return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        rt_sleep(10);
    }
    kill(pid, SIGKILL);
    waitpid(pid, &status, 0);
    return -1;
}

/* What the child wrote so far (the memfd stays open). */
static const char *peek(int fd)
{
    static char buf[4096];
    ssize_t n = pread(fd, buf, sizeof buf - 1, 0);
    buf[n > 0 ? n : 0] = 0;
    return buf;
}

/* Echo every data message of `a` back until it goes down; returns how many. */
static unsigned echo_until_down(esock_assoc a)
{
    unsigned n = 0;
    for (;;) {
        rt_msg *m = NULL;
        CHECK(rt_receive(10000, &m) == 0);
        if (m->tag == ESOCK_MSG_ASSOC_DOWN && esock_down_of(m)->assoc.id == a.id) {
            CHECK(esock_down_of(m)->reason == ESOCK_DOWN_SHUTDOWN);
            rt_msg_free(m);
            return n;
        }
        const esock_data *d = esock_data_of(m);
        CHECK(d != NULL && d->assoc.id == a.id);
        CHECK_RC(esock_send(a, 0, 0, 0, d->data, d->len, NULL), 0);
        n++;
        rt_msg_free(m);
    }
}

static void interop_body(void *arg)
{
    /* the script connects to a framed esock server, which echoes */
    esock_ep sep = tcp_ep("127.0.0.1", 0, ESOCK_FRAME_LEN32);
    CHECK_RC(esock_owner_register(sep, rt_self(), NULL, NULL), 0);
    char port[16];
    snprintf(port, sizeof port, "%d", esock_ep_port(sep));
    char *cargv[] = {"python3", TCP_PEER_PY, "client", "127.0.0.1", port, NULL};
    int out;
    pid_t pid = spawn_peer(cargv, -1, &out);
    CHECK(pid > 0);
    rt_msg *m = wait_tag(ESOCK_MSG_ASSOC_UP);
    esock_assoc r = esock_up_of(m)->assoc;
    rt_msg_free(m);
    CHECK(echo_until_down(r) == 6);
    int st = child_status(pid);
    if (st != 0)
        fprintf(stderr, "tcp_peer.py client: %s\n", peek(out));
    CHECK(st == 0 && strstr(peek(out), "client ok 6") != NULL);
    close(out);

    /* esock connects to the script, which echoes each message reversed */
    char *sargv[] = {"python3", TCP_PEER_PY, "server", NULL};
    pid = spawn_peer(sargv, -1, &out);
    CHECK(pid > 0);
    unsigned sport = 0;
    for (int i = 0; i < 500 && sscanf(peek(out), "port %u", &sport) != 1; i++)
        rt_sleep(10);
    CHECK(sport > 0 && sport < 65536);
    esock_ep cep = tcp_ep("127.0.0.1", 0, ESOCK_FRAME_LEN32);
    esock_assoc c;
    connect_to(cep, "127.0.0.1", (uint16_t)sport, &c, NULL);
    const char *words[] = {"stressed", "", "drawer", "live"};
    const char *backw[] = {"desserts", "", "reward", "evil"};
    for (int i = 0; i < 4; i++)
        CHECK_RC(esock_send(c, 0, 0, 0, words[i], strlen(words[i]), NULL), 0);
    for (int i = 0; i < 4; i++)
        want_msg(c, backw[i], strlen(backw[i]));
    CHECK_RC(esock_assoc_shutdown(c), 0);
    m = wait_for(ESOCK_MSG_ASSOC_DOWN, c);
    CHECK(esock_down_of(m)->reason == ESOCK_DOWN_SHUTDOWN && esock_down_of(m)->error == 0);
    rt_msg_free(m);
    st = child_status(pid);
    CHECK(st == 0 && strstr(peek(out), "server ok 4") != NULL);
    close(out);

    /* nc: a byte stream both ways, unframed */
    esock_ep rep = tcp_ep("127.0.0.1", 0, ESOCK_FRAME_NONE);
    CHECK_RC(esock_owner_register(rep, rt_self(), NULL, NULL), 0);
    snprintf(port, sizeof port, "%d", esock_ep_port(rep));
    int in[2];
    CHECK(pipe2(in, O_CLOEXEC) == 0 && write(in[1], "hello from nc\n", 14) == 14);
    char *nargv[] = {"nc", "-N", "127.0.0.1", port, NULL};
    pid = spawn_peer(nargv, in[0], &out);
    CHECK(pid > 0);
    close(in[0]);
    m = wait_tag(ESOCK_MSG_ASSOC_UP);
    r = esock_up_of(m)->assoc;
    rt_msg_free(m);
    read_bytes(r, (const unsigned char *)"hello from nc\n", 14);
    CHECK_RC(esock_send(r, 0, 0, 0, "hello from esock\n", 17, NULL), 0);
    for (int i = 0; i < 500 && strcmp(peek(out), "hello from esock\n") != 0; i++)
        rt_sleep(10);
    CHECK(strcmp(peek(out), "hello from esock\n") == 0);
    close(in[1]); /* nc's input ends: it ends its side (-N), and esock's with it */
    m = wait_for(ESOCK_MSG_ASSOC_DOWN, r);
    CHECK(esock_down_of(m)->reason == ESOCK_DOWN_SHUTDOWN);
    rt_msg_free(m);
    CHECK(child_status(pid) == 0);
    close(out);
    CHECK_RC(esock_ep_close(rep), 0);
    CHECK_RC(esock_ep_close(cep), 0);
    CHECK_RC(esock_ep_close(sep), 0);
    rt_msg_free(wait_tag(ESOCK_MSG_EP_DOWN));
    rt_msg_free(wait_tag(ESOCK_MSG_EP_DOWN));
}

Test(esock_tcp, interop_with_a_python_peer_and_nc, .timeout = 60)
{
    es_start();
    run(interop_body, NULL);
    es_stop();
}

/* ---- a thousand connections on one endpoint
 * ------------------------------------------------------ */

static void many_body(void *arg)
{
    int n = (int)(intptr_t)arg;
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    if (rl.rlim_cur < (rlim_t)(2 * n + 200)) {
        rl.rlim_cur = rl.rlim_max < (rlim_t)(2 * n + 200) ? rl.rlim_max : (rlim_t)(2 * n + 200);
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    /* a backlog for them all: SYNs beyond it wait for the client's retry (1 s, 3 s, ...) */
    esock_ep_opts so = {.proto = ESOCK_TCP, .framing = ESOCK_FRAME_LEN32, .backlog = 2 * n};
    esock_ep sep;
    CHECK_RC(esock_ep_create(&so, &sep), 0);
    esock_ep cep = tcp_ep("127.0.0.1", 0, ESOCK_FRAME_LEN32); /* many from one endpoint */
    CHECK_RC(esock_owner_register(sep, rt_self(), NULL, NULL), 0);
    esock_assoc *cs = calloc((size_t)n, sizeof *cs);
    CHECK(cs != NULL);
    esock_addr ra;
    CHECK_RC(esock_addr_parse("127.0.0.1", 0, &ra), 0);
    for (int i = 0; i < n; i++)
        CHECK_RC(esock_assoc_create(cep, &ra, 1, (uint16_t)esock_ep_port(sep), NULL, &cs[i]), 0);
    for (int i = 0; i < 2 * n; i++)
        rt_msg_free(wait_tag(ESOCK_MSG_ASSOC_UP));
    CHECK_RC(esock_ep_assocs(sep, NULL, 0), n);
    CHECK_RC(esock_ep_assocs(cep, NULL, 0), n);
    for (int i = 0; i < n; i++) {
        uint32_t v = (uint32_t)i;
        CHECK_RC(esock_send(cs[i], 0, 0, 0, &v, sizeof v, NULL), 0);
    }
    static unsigned char seen[4096];
    memset(seen, 0, sizeof seen);
    for (int i = 0; i < n; i++) {
        rt_msg *m = wait_tag(ESOCK_MSG_DATA);
        const esock_data *d = esock_data_of(m);
        uint32_t v;
        CHECK(d->len == 4);
        memcpy(&v, d->data, 4);
        CHECK(v < (uint32_t)n && !seen[v]);
        seen[v] = 1;
        rt_msg_free(m);
    }
    /* closing the server's endpoint ends all its connections, both sides told */
    CHECK_RC(esock_ep_close(sep), 0);
    for (int i = 0; i < 2 * n; i++)
        rt_msg_free(wait_tag(ESOCK_MSG_ASSOC_DOWN));
    rt_msg_free(wait_tag(ESOCK_MSG_EP_DOWN));
    CHECK_RC(esock_ep_assocs(cep, NULL, 0), 0);
    CHECK_RC(esock_ep_close(cep), 0);
    free(cs);
}

Test(esock_tcp, a_thousand_connections_on_one_endpoint, .timeout = 120)
{
    es_start();
    run(many_body, (void *)(intptr_t)1000);
    es_stop();
}

/* ---- an owner restarted by its supervisor gets its connection back -----------------------------
 */

#define HANDOVER_WAIT_MS 3000

static void handover_wait_body(void *arg)
{
    esock_ep_opts so = {
        .proto = ESOCK_TCP, .framing = ESOCK_FRAME_LEN32, .handover_wait_ms = HANDOVER_WAIT_MS};
    esock_ep sep, cep = tcp_ep("127.0.0.1", 0, ESOCK_FRAME_LEN32);
    CHECK_RC(esock_ep_create(&so, &sep), 0);
    struct sup_owner_arg oa = {sep, rt_self()};
    rt_pid sup;
    CHECK_RC(sup_owner_tree(&oa, &sup), 0);
    rt_msg_free(wait_tag(7));
    esock_assoc c, s;
    connect_to(cep, "127.0.0.1", (uint16_t)esock_ep_port(sep), &c, &s);
    rt_sup_child_info ci;
    CHECK_RC(rt_sup_which_children(sup, &ci, 1), 1);
    rt_pid first = ci.pid;
    rt_send(first, 2, NULL, 0); /* the owner crashes */
    rt_msg_free(wait_tag(7));   /* restarted, registered */
    CHECK_RC(esock_send(c, 0, 0, 0, "while away", 10, NULL), 0);
    rt_msg *m = wait_for(ESOCK_MSG_ASSOC_UP, s);
    CHECK(esock_up_of(m)->handed_over);
    rt_msg_free(m);
    want_msg(s, "while away", 10);
    esock_assoc_info info;
    CHECK_RC(esock_assoc_status(s, &info), 0);
    CHECK_RC(rt_sup_which_children(sup, &ci, 1), 1);
    CHECK(info.owner.id == ci.pid.id && ci.pid.id != first.id && info.state == ESOCK_ASSOC_UP);
    /* nobody comes back: after the wait it is closed, not before (the wait
     * starts after t0, and its timer never fires early on the same clock),
     * and not much after */
    int64_t t0 = rt_now_ms();
    CHECK_RC(rt_sup_terminate_child(sup, "owner"), 0);
    m = wait_for(ESOCK_MSG_ASSOC_DOWN, c);
    int64_t waited = rt_now_ms() - t0;
    CHECK(esock_down_of(m)->reason == ESOCK_DOWN_SHUTDOWN);
    rt_msg_free(m);
    CHECK(waited >= HANDOVER_WAIT_MS && waited <= HANDOVER_WAIT_MS + 1000);
    CHECK_RC(sup_stop(sup), 0);
    CHECK_RC(esock_ep_close(cep), 0);
    CHECK_RC(esock_ep_close(sep), 0);
}

Test(esock_tcp, an_owner_restarted_by_its_supervisor_gets_its_connection_back)
{
    es_start();
    run(handover_wait_body, NULL);
    es_stop();
}

/* ---- bad input on every call
 * ---------------------------------------------------------------------- */

static void bad_input_body(void *arg)
{
    esock_ep ep;
    esock_ep_opts o = {.proto = ESOCK_TCP};
    /* SCTP's options, or no such framing */
    const esock_ep_opts bad[] = {
        {.proto = ESOCK_TCP, .rto_min_ms = 10},
        {.proto = ESOCK_TCP, .ostreams = 2},
        {.proto = ESOCK_TCP, .istreams = 16},
        {.proto = ESOCK_TCP, .default_ppid = 46},
        {.proto = ESOCK_TCP, .framing = 2},
        {.proto = ESOCK_TCP, .max_msg = (size_t)RT_MSG_MAX_SIZE},
        {.proto = ESOCK_TCP, .naddrs = 9},
        {.proto = ESOCK_TCP, .handover_wait_ms = 3600001},
        {.proto = ESOCK_SCTP, .framing = ESOCK_FRAME_LEN32},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        CHECK_RC(esock_ep_create(&bad[i], &ep), -EINVAL);
    /* an address not ours; a port in use by another program */
    o.naddrs = 1;
    CHECK_RC(esock_addr_parse("192.0.2.1", 0, &o.addrs[0]), 0);
    CHECK_RC(esock_ep_create(&o, &ep), -EADDRNOTAVAIL);
    int fd = raw_listen(&o.port);
    CHECK_RC(esock_addr_parse("127.0.0.1", 0, &o.addrs[0]), 0);
    CHECK_RC(esock_ep_create(&o, &ep), -EADDRINUSE);
    close(fd);
    /* a port bound but not listening: kept, so nobody else can listen there */
    esock_addr b;
    CHECK_RC(esock_addr_parse("127.0.0.1", 0, &b), 0);
    int bound = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    socklen_t bl = sizeof b.in4;
    CHECK(bound >= 0 && bind(bound, &b.sa, sizeof b.in4) == 0 &&
          getsockname(bound, &b.sa, &bl) == 0);
    uint16_t closed = ntohs(b.in4.sin_port);
    /* the same binding twice: the same endpoint; an overlapping one: refused */
    o.port = 0;
    CHECK_RC(esock_ep_create(&o, &ep), 0);
    o.port = (uint16_t)esock_ep_port(ep);
    esock_ep again;
    CHECK_RC(esock_ep_create(&o, &again), 1);
    CHECK(again.id == ep.id);
    CHECK_RC(esock_addr_parse("0.0.0.0", 0, &o.addrs[0]), 0);
    CHECK_RC(esock_ep_create(&o, &again), ESOCK_EOVERLAP);
    /* associations: bad addresses, ports, owners; a refused connection.
     * Addresses that do not parse: out of range, with a port in the text
     * (the port is an argument of its own), none */
    esock_addr ra;
    CHECK_RC(esock_addr_parse("127.0.0.256", 0, &ra), -EINVAL);
    CHECK_RC(esock_addr_parse("127.0.0.1:80", 0, &ra), -EINVAL);
    CHECK_RC(esock_addr_parse(NULL, 0, &ra), -EINVAL);
    CHECK_RC(esock_addr_parse("127.0.0.1", 0, &ra), 0);
    esock_assoc c;
    CHECK_RC(esock_assoc_create(ep, &ra, 0, 80, NULL, &c), -EINVAL);
    CHECK_RC(esock_assoc_create(ep, &ra, 1, 0, NULL, &c), -EINVAL);
    CHECK_RC(esock_assoc_create(ep, NULL, 1, 80, NULL, &c), -EINVAL);
    CHECK_RC(esock_assoc_create(ESOCK_EP_NONE, &ra, 1, 80, NULL, &c), ESOCK_ESTALE);
    rt_pid dead;
    CHECK_RC(rt_spawn(other_owner, NULL, NULL, &dead), 0);
    rt_send(dead, 1, NULL, 0);
    while (rt_alive(dead))
        rt_sleep(1);
    CHECK_RC(esock_assoc_create(ep, &ra, 1, 80, &(esock_assoc_opts){.owner = dead}, &c), -ESRCH);
    CHECK_RC(esock_assoc_create(ep, &ra, 1, closed, NULL, &c), 0);
    rt_msg *m = wait_for(ESOCK_MSG_ASSOC_DOWN, c);
    CHECK(esock_down_of(m)->reason == ESOCK_DOWN_CANT_START &&
          esock_down_of(m)->error == -ECONNREFUSED);
    rt_msg_free(m);
    /* calls on a closed association, a stale handle, no data */
    CHECK_RC(esock_send(c, 0, 0, 0, "x", 1, NULL), ESOCK_ECLOSED);
    CHECK_RC(esock_assoc_shutdown(c), ESOCK_ECLOSED);
    CHECK_RC(esock_assoc_paths(c, NULL, 0), ESOCK_ECLOSED);
    esock_assoc forged = {c.id + (1ull << 40)};
    CHECK_RC(esock_send(forged, 0, 0, 0, "x", 1, NULL), ESOCK_ESTALE);
    CHECK_RC(esock_send(c, 0, 0, 0, NULL, 1, NULL), -EINVAL);
    CHECK_RC(esock_send(c, 0, 0, 2, "x", 1, NULL), -EINVAL);
    CHECK_RC(esock_owner_unregister(ep, rt_self()), ESOCK_ENOOWNER);
    /* and everything still works */
    CHECK_RC(esock_owner_register(ep, rt_self(), NULL, NULL), 0);
    esock_assoc s;
    connect_to(ep, "127.0.0.1", (uint16_t)esock_ep_port(ep), &c, &s);
    CHECK_RC(esock_send(c, 0, 0, 0, "fine", 4, NULL), 0);
    read_bytes(s, (const unsigned char *)"fine", 4);
    close(bound);
    CHECK_RC(esock_ep_close(ep), 0);
    CHECK_RC(esock_ep_close(ep), ESOCK_ESTALE);
    CHECK_RC(esock_ep_port(ep), ESOCK_ESTALE);
    while (rt_receive(50, &m) == 0)
        rt_msg_free(m);
}

Test(esock_tcp, bad_input_and_cannot_start)
{
    es_start();
    run(bad_input_body, NULL);
    es_stop();
}

/* ---- several local addresses, and the wildcard -------------------------------------------------
 */

static void addrs_body(void *arg)
{
    /* one endpoint listening on an IPv4 and an IPv6 address, one port */
    esock_ep_opts o = {.proto = ESOCK_TCP, .naddrs = 2, .framing = ESOCK_FRAME_LEN32};
    CHECK_RC(esock_addr_parse("127.0.0.1", 0, &o.addrs[0]), 0);
    CHECK_RC(esock_addr_parse("::1", 0, &o.addrs[1]), 0);
    esock_ep sep;
    CHECK_RC(esock_ep_create(&o, &sep), 0);
    CHECK_RC(esock_owner_register(sep, rt_self(), NULL, NULL), 0);
    uint16_t port = (uint16_t)esock_ep_port(sep);
    esock_ep c4 = tcp_ep("127.0.0.1", 0, ESOCK_FRAME_LEN32),
             c6 = tcp_ep("::1", 0, ESOCK_FRAME_LEN32);
    esock_assoc a4, s4, a6, s6;
    connect_to(c4, "127.0.0.1", port, &a4, &s4);
    connect_to(c6, "::1", port, &a6, &s6);
    CHECK_RC(esock_send(a4, 0, 0, 0, "four", 4, NULL), 0);
    CHECK_RC(esock_send(a6, 0, 0, 0, "six", 3, NULL), 0);
    want_msg(s4, "four", 4);
    want_msg(s6, "six", 3);
    esock_assoc_info info;
    CHECK_RC(esock_assoc_status(s6, &info), 0);
    CHECK(info.peer.addrs[0].sa.sa_family == AF_INET6);
    esock_ep found;
    esock_addr a;
    CHECK_RC(esock_addr_parse("::1", 0, &a), 0);
    CHECK_RC(esock_ep_find(ESOCK_TCP, &a, port, &found), 0);
    CHECK(found.id == sep.id);
    /* the IPv4 wildcard on another endpoint: reachable through 127.0.0.1 */
    esock_ep wild = tcp_ep("0.0.0.0", 0, ESOCK_FRAME_LEN32);
    CHECK_RC(esock_owner_register(wild, rt_self(), NULL, NULL), 0);
    esock_assoc aw, sw;
    connect_to(c4, "127.0.0.1", (uint16_t)esock_ep_port(wild), &aw, &sw);
    CHECK_RC(esock_send(sw, 0, 0, 0, "wild", 4, NULL), 0);
    want_msg(aw, "wild", 4);
    /* an endpoint overlapping the first one's port on the wildcard: refused */
    o = (esock_ep_opts){.proto = ESOCK_TCP, .naddrs = 1, .port = port};
    CHECK_RC(esock_addr_parse("::", 0, &o.addrs[0]), 0);
    esock_ep again;
    CHECK_RC(esock_ep_create(&o, &again), ESOCK_EOVERLAP);
    CHECK_RC(esock_ep_close(wild), 0);
    CHECK_RC(esock_ep_close(c4), 0);
    CHECK_RC(esock_ep_close(c6), 0);
    CHECK_RC(esock_ep_close(sep), 0);
    rt_msg *m;
    while (rt_receive(100, &m) == 0)
        rt_msg_free(m);
}

Test(esock_tcp, several_local_addresses_and_the_wildcard)
{
    es_start();
    run(addrs_body, NULL);
    es_stop();
}

/* ---- found in review: each of these once went wrong
 * ---------------------------------------------- */

/* A connection ended while its connect was still queued in the ring must
 * not leave that connect to run on the next socket to get its number. b's
 * UP and status speak for b's own socket; where it landed the listeners
 * say: lb accepts b's connection (to pb, from b's own port, with the bytes
 * b sends, reset by b's abort) and nothing else, la nothing that a's
 * abort does not reset.
 *
 * It runs on one scheduler, so that a's connect is still queued when its
 * abort comes: the endpoint starts a's process beside us and replies
 * before that process runs (connecting is the first thing it does), so
 * the abort is in its mailbox by then and both are handled in one turn;
 * nothing reaches the kernel within a turn. (A second scheduler stealing
 * a's process could run its connect first.) a's DOWN wakes us before
 * io_uring's batch goes to the kernel (after a turn that leaves nothing to
 * run, or every 32 turns), and epoll, which tries its batch between turns,
 * never tries a cancelled connect: so where a's connect was still queued
 * at its abort, la has nothing of a yet. Those rounds are counted, and
 * most must be such. io_uring then submits the connect on a's own socket,
 * ahead of the close queued after it (la gets the connection, reset), and
 * b's socket is made before that batch goes: had a's socket been closed at
 * once, b's would have got its number, and a's connect. */
#define FD_REUSE_ROUNDS 200

static void fd_reuse_body(void *arg)
{
    uint16_t pa, pb;
    int la = raw_listen(&pa), lb = raw_listen(&pb);
    esock_ep cep = tcp_ep("127.0.0.1", 0, ESOCK_FRAME_NONE);
    esock_addr ra;
    CHECK_RC(esock_addr_parse("127.0.0.1", 0, &ra), 0);
    unsigned queued = 0;
    for (uint32_t i = 0; i < FD_REUSE_ROUNDS; i++) {
        esock_assoc a, b;
        CHECK_RC(esock_assoc_create(cep, &ra, 1, pa, NULL, &a), 0);
        CHECK_RC(esock_assoc_abort(a), 0);
        rt_msg *m = wait_for(ESOCK_MSG_ASSOC_DOWN, a);
        CHECK(esock_down_of(m)->reason == ESOCK_DOWN_ABORT);
        rt_msg_free(m);
        int afd = accept4(la, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (afd < 0) {
            CHECK(errno == EAGAIN);
            queued++; /* a's connect has not reached the kernel */
        } else {
            CHECK(raw_end(afd) == -ECONNRESET);
            close(afd);
        }
        CHECK_RC(esock_assoc_create(cep, &ra, 1, pb, NULL, &b), 0);
        m = wait_for(ESOCK_MSG_ASSOC_UP, b);
        CHECK(esock_up_of(m)->peer.port == pb);
        rt_msg_free(m);
        esock_assoc_info info; /* local_port: getsockname on b's socket */
        CHECK_RC(esock_assoc_status(b, &info), 0);
        CHECK(info.peer.port == pb && info.local_port != 0);
        CHECK_RC(esock_send(b, 0, 0, 0, &i, sizeof i, NULL), 0);
        /* lb's side of it: to pb, from b's port, carrying b's bytes */
        int fd = raw_accept(lb);
        esock_addr me, peer;
        socklen_t ml = sizeof me, pl = sizeof peer;
        CHECK(getsockname(fd, &me.sa, &ml) == 0 && getpeername(fd, &peer.sa, &pl) == 0);
        CHECK(me.sa.sa_family == AF_INET && ntohs(me.in4.sin_port) == pb);
        CHECK(peer.sa.sa_family == AF_INET && peer.in4.sin_addr.s_addr == htonl(INADDR_LOOPBACK) &&
              ntohs(peer.in4.sin_port) == info.local_port);
        uint32_t got;
        raw_read(fd, &got, sizeof got);
        CHECK(got == i);
        CHECK(accept4(lb, NULL, NULL, 0) < 0 && errno == EAGAIN); /* only that one */
        /* what came to la since: a's connection at most, reset by a's abort
         * (connected or not when it came), bearing nothing */
        while ((afd = accept4(la, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0) {
            CHECK(raw_end(afd) == -ECONNRESET);
            close(afd);
        }
        CHECK(errno == EAGAIN);
        CHECK_RC(esock_assoc_abort(b), 0);
        rt_msg_free(wait_for(ESOCK_MSG_ASSOC_DOWN, b));
        CHECK(raw_end(fd) == -ECONNRESET); /* b's abort reset lb's connection */
        close(fd);
    }
    if (queued < FD_REUSE_ROUNDS * 3 / 4)
        fprintf(stderr, "%s: a's connect still queued at its abort in %u of %u rounds\n",
                rt_io_backend(), queued, FD_REUSE_ROUNDS);
    CHECK(queued >= FD_REUSE_ROUNDS * 3 / 4);
    close(la);
    close(lb);
    CHECK_RC(esock_ep_close(cep), 0);
}

Test(esock_tcp, a_connect_still_queued_never_lands_on_another_socket)
{
    es_start_n(1); /* see fd_reuse_body */
    run(fd_reuse_body, NULL);
    es_stop();
}

/* Urgent data: a read stops at its mark though more is there. */
static void urgent_body(void *arg)
{
    esock_ep sep = tcp_ep("127.0.0.1", 0, ESOCK_FRAME_NONE);
    CHECK_RC(esock_owner_register(sep, rt_self(), NULL, NULL), 0);
    int fd = raw_connect("127.0.0.1", (uint16_t)esock_ep_port(sep));
    rt_msg *m = wait_tag(ESOCK_MSG_ASSOC_UP);
    esock_assoc r = esock_up_of(m)->assoc;
    rt_msg_free(m);
    int cork = 1;
    CHECK(setsockopt(fd, IPPROTO_TCP, TCP_CORK, &cork, sizeof cork) == 0);
    CHECK(send(fd, "hello", 5, 0) == 5 && send(fd, "!", 1, MSG_OOB) == 1 &&
          send(fd, "world", 5, 0) == 5);
    cork = 0;
    CHECK(setsockopt(fd, IPPROTO_TCP, TCP_CORK, &cork, sizeof cork) == 0);
    read_bytes(r, (const unsigned char *)"helloworld", 10); /* the urgent byte is not inline */
    close(fd);
    rt_msg_free(wait_for(ESOCK_MSG_ASSOC_DOWN, r));
    CHECK_RC(esock_ep_close(sep), 0);
    rt_msg_free(wait_tag(ESOCK_MSG_EP_DOWN));
}

Test(esock_tcp, urgent_data_does_not_hold_back_what_follows)
{
    es_start();
    run(urgent_body, NULL);
    es_stop();
}

/* A peer that takes nothing: fill esock's queue to the refusal. */
static uint32_t fill_queue(esock_assoc a, size_t size)
{
    static unsigned char msg[8192];
    uint32_t seq = 0;
    int rc;
    while ((rc = esock_send(a, 0, 0, 0, msg, size, &(esock_send_opts){.context = seq})) == 0)
        seq++;
    CHECK_RC(rc, ESOCK_EWOULDBLOCK);
    return seq;
}

/* The association's DOWN, after what never went out came back: the last
 * of the `sent` messages of `size` bytes fill_queue sent (their contexts
 * 0 .. sent - 1), oldest first, whole, from esock's queue (ESOCK_ECLOSED;
 * only the oldest may have gone out in part). How many in *nfailed. */
static rt_msg *failed_then_down(esock_assoc a, uint32_t sent, size_t size, unsigned *nfailed)
{
    uint32_t first = 0;
    *nfailed = 0;
    for (;;) {
        rt_msg *m = NULL;
        CHECK(rt_receive(15000, &m) == 0);
        if (m->tag == ESOCK_MSG_ASSOC_DOWN && esock_down_of(m)->assoc.id == a.id) {
            CHECK(*nfailed == 0 || first + *nfailed == sent);
            return m;
        }
        const esock_send_failed *f = esock_send_failed_of(m);
        if (f != NULL && f->assoc.id == a.id) {
            if (*nfailed == 0)
                first = f->context;
            CHECK(f->context == first + *nfailed && f->len == size);
            CHECK(f->on_wire ? *nfailed == 0 : f->error == ESOCK_ECLOSED);
            (*nfailed)++;
        }
        rt_msg_free(m);
    }
}

static void stuck_peer_body(void *arg)
{
    const size_t size = 4096, hiwat = 64 << 10;
    esock_ep_opts co = {.proto = ESOCK_TCP, .send_hiwat = hiwat, .sndbuf = 16 << 10};
    esock_ep cep;
    CHECK_RC(esock_ep_create(&co, &cep), 0);
    uint16_t port;
    int l = raw_listen(&port);
    int small = 4096; /* the accepted sockets' too */
    CHECK(setsockopt(l, SOL_SOCKET, SO_RCVBUF, &small, sizeof small) == 0);
    esock_assoc c;
    connect_to(cep, "127.0.0.1", port, &c, NULL);
    int fd = raw_accept(l);
    /* a shutdown whose queue cannot be written: it gives up after 10 s,
     * and what never went out comes back first. The sends reached the
     * queue's high watermark (what the kernel took is beyond it); what
     * comes back is what waited in the queue: no more than it holds */
    uint32_t sent = fill_queue(c, size);
    CHECK(sent > 0 && (sent + 1) * size > hiwat);
    int64_t t0 = rt_now_ms();
    CHECK_RC(esock_assoc_shutdown(c), 0);
    unsigned n;
    rt_msg *m = failed_then_down(c, sent, size, &n);
    CHECK(esock_down_of(m)->reason == ESOCK_DOWN_SHUTDOWN && esock_down_of(m)->error == -ETIMEDOUT);
    CHECK(rt_now_ms() - t0 >= 9900 && n > 0 && n <= hiwat / size);
    rt_msg_free(m);
    close(fd);
    /* a reset while esock has queued data: an abort, the kernel's reason */
    connect_to(cep, "127.0.0.1", port, &c, NULL);
    fd = raw_accept(l);
    sent = fill_queue(c, size);
    CHECK(sent > 0 && (sent + 1) * size > hiwat);
    struct linger lg = {1, 0};
    CHECK(setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg) == 0);
    close(fd);
    m = failed_then_down(c, sent, size, &n);
    CHECK(esock_down_of(m)->reason == ESOCK_DOWN_ABORT && esock_down_of(m)->error == -ECONNRESET);
    CHECK(n > 0 && n <= hiwat / size);
    rt_msg_free(m);
    close(l);
    CHECK_RC(esock_ep_close(cep), 0);
}

Test(esock_tcp, a_peer_that_takes_nothing_then_resets, .timeout = 60)
{
    es_start();
    run(stuck_peer_body, NULL);
    es_stop();
}

/* Without an owner a TCP endpoint does not accept: the backlog holds them. */
static void no_owner_body(void *arg)
{
    esock_ep sep = tcp_ep("127.0.0.1", 0, ESOCK_FRAME_NONE);
    uint16_t port = (uint16_t)esock_ep_port(sep);
    CHECK_RC(esock_owner_register(sep, rt_self(), NULL, NULL), 0);
    CHECK_RC(esock_owner_unregister(sep, rt_self()), 0);
    rt_sleep(50); /* the accepts are cancelled */
    int fds[5];
    for (int i = 0; i < 5; i++) {
        fds[i] = raw_connect("127.0.0.1", port);
        raw_write(fds[i], "x", 1);
    }
    rt_sleep(100);
    CHECK_RC(esock_ep_assocs(sep, NULL, 0), 0);
    CHECK_RC(esock_owner_register(sep, rt_self(), NULL, NULL), 0);
    for (int i = 0; i < 5; i++) {
        rt_msg *m = wait_tag(ESOCK_MSG_ASSOC_UP);
        read_bytes(esock_up_of(m)->assoc, (const unsigned char *)"x", 1);
        rt_msg_free(m);
    }
    for (int i = 0; i < 5; i++)
        close(fds[i]);
    for (int i = 0; i < 5; i++)
        rt_msg_free(wait_tag(ESOCK_MSG_ASSOC_DOWN));
    CHECK_RC(esock_ep_close(sep), 0);
    rt_msg_free(wait_tag(ESOCK_MSG_EP_DOWN));
}

Test(esock_tcp, without_an_owner_connections_wait_in_the_backlog)
{
    es_start();
    run(no_owner_body, NULL);
    es_stop();
}

/* handover_wait_ms without handover: an owner that was there all along
 * does not take it; one that registers afterwards does. */
static void wait_not_handover_body(void *arg)
{
    esock_ep_opts so = {.proto = ESOCK_TCP, .handover_wait_ms = 5000};
    esock_ep sep, cep = tcp_ep("127.0.0.1", 0, ESOCK_FRAME_NONE);
    CHECK_RC(esock_ep_create(&so, &sep), 0);
    rt_pid me = rt_self(), o1, o2;
    CHECK_RC(esock_owner_register(sep, me, NULL, NULL), 0); /* there all along, takes anything */
    CHECK_RC(rt_spawn(other_owner, &me, NULL, &o1), 0);
    CHECK_RC(esock_owner_register(sep, o1, NULL, NULL), 0); /* newer: asked first */
    esock_assoc c, s;
    connect_to(cep, "127.0.0.1", (uint16_t)esock_ep_port(sep), &c, &s); /* o1 forwards */
    rt_send(o1, 1, NULL, 0); /* o1 ends: nobody registered after it */
    rt_msg *m;
    CHECK(rt_receive_tag(ESOCK_MSG_ASSOC_UP, 300, &m) == -ETIMEDOUT);
    esock_assoc_info info;
    CHECK_RC(esock_assoc_status(s, &info), 0);
    CHECK(info.state == ESOCK_ASSOC_UP && rt_pid_is_none(info.owner));
    CHECK_RC(rt_spawn(other_owner, &me, NULL, &o2), 0);
    CHECK_RC(esock_owner_register(sep, o2, NULL, NULL), 0);
    m = wait_for(ESOCK_MSG_ASSOC_UP, s);
    CHECK(esock_up_of(m)->handed_over);
    rt_msg_free(m);
    CHECK_RC(esock_assoc_status(s, &info), 0);
    CHECK(info.owner.id == o2.id);
    rt_send(o2, 1, NULL, 0);
    CHECK_RC(esock_ep_close(cep), 0);
    CHECK_RC(esock_ep_close(sep), 0);
    while (rt_receive(100, &m) == 0)
        rt_msg_free(m);
}

Test(esock_tcp, handover_wait_goes_to_an_owner_that_registers_afterwards)
{
    es_start();
    run(wait_not_handover_body, NULL);
    es_stop();
}

/* A reader held back by rcv_hiwat leaves data in the socket: the backend
 * must wait for the next arrival, not report the same readiness again and
 * again (the epoll control once spun at full speed there). */
static void idle_stall_body(void *arg)
{
    struct holder h = {.test = rt_self()};
    struct stalled p;
    stalled_pair(&h, 256 << 10, &p);
    /* fill the client's queue to its high watermark (the refused send
     * would have passed it): the sends end on a full queue, not on another
     * failure, which would leave no stall to measure */
    static unsigned char msg[1000];
    size_t n = 0;
    int rc;
    while ((rc = esock_send(p.c, 0, 0, 0, msg, sizeof msg, NULL)) == 0)
        n++;
    CHECK_RC(rc, ESOCK_EWOULDBLOCK);
    CHECK((n + 1) * sizeof msg > (256u << 10));
    rt_sleep(200); /* what can move has moved */
    rt_stats a, b;
    CHECK_RC(rt_stats_get(&a), 0);
    rt_sleep(500);
    CHECK_RC(rt_stats_get(&b), 0);
    uint64_t calls = b.io_syscalls - a.io_syscalls;
    if (calls > 200)
        fprintf(stderr, "%s: %llu I/O system calls in 0.5 s of stall\n", rt_io_backend(),
                (unsigned long long)calls);
    CHECK(calls <= 200);
    /* held back all along: what the full socket could not take still waits */
    esock_assoc_info info;
    CHECK_RC(esock_assoc_status(p.c, &info), 0);
    CHECK(info.queued > 0);
    rt_send(p.holder, 1, NULL, 0);
    CHECK_RC(esock_ep_close(p.cep), 0);
    CHECK_RC(esock_ep_close(p.sep), 0);
    rt_msg *m;
    while (rt_receive(100, &m) == 0)
        rt_msg_free(m);
}

Test(esock_tcp, a_stalled_reader_does_not_spin_io_uring)
{
    test_start_opts(&(rt_opts){.schedulers = 2, .io = RT_IO_URING});
    cr_assert_eq(esock_start(), 0);
    run(idle_stall_body, NULL);
    es_stop();
}

Test(esock_tcp, a_stalled_reader_does_not_spin_epoll)
{
    test_start_opts(&(rt_opts){.schedulers = 2, .io = RT_IO_EPOLL});
    cr_assert_eq(esock_start(), 0);
    run(idle_stall_body, NULL);
    es_stop();
}

/* The accept callback's peer has its stream counts (they were once lost
 * when the peer's addresses were filled in)
 * (esock.h: "negotiated outbound / inbound streams"). */

static void rv_streams_body(void *arg)
{
    (void)arg;
    esock_ep sep = tcp_ep("127.0.0.1", 0, 0), cep = tcp_ep("127.0.0.1", 0, 0);
    CHECK_RC(esock_owner_register(sep, rt_self(), record_streams, NULL), 0);
    esock_assoc c, s;
    connect_to(cep, "127.0.0.1", (uint16_t)esock_ep_port(sep), &c, &s);
    CHECK(atomic_load(&seen_os) == 1 && atomic_load(&seen_is) == 1);
    CHECK_RC(esock_ep_close(sep), 0);
    CHECK_RC(esock_ep_close(cep), 0);
}

Test(esock_tcp, accept_callback_sees_stream_counts)
{
    es_start();
    run(rv_streams_body, NULL);
    es_stop();
}

/* ---- sends batched per turn (esock.h: "sends are batched per turn") ----------------------------
 */

unsigned tcp_data_segs_in(int fd); /* tcp_segs.c */

#define TURN_MSG 16 /* the size of turn_sender's messages: a sequence number, then its bytes */

/* How turn_sender ends its turn after the sends. */
enum turn_end { TURN_BLOCKS, TURN_SHUTS_DOWN, TURN_ENDS };

struct turn_arg {
    rt_pid test;
    uint16_t port;
    unsigned n;
    enum turn_end how;
};

/* The owner of a connection to a plain socket: once up it tells the test
 * (tag 5), waits for the go (tag 6), sends n small messages one after
 * another, and then blocks (until tag 7), shuts the connection down, or
 * ends. */
static void turn_sender(void *arg)
{
    const struct turn_arg *a = arg;
    esock_ep cep = tcp_ep("127.0.0.1", 0, ESOCK_FRAME_LEN32);
    esock_assoc c;
    connect_to(cep, "127.0.0.1", a->port, &c, NULL);
    rt_send(a->test, 5, NULL, 0);
    rt_msg_free(wait_tag(6));
    unsigned char msg[TURN_MSG];
    for (uint32_t i = 0; i < a->n; i++) {
        memset(msg, (int)(i & 0xff), sizeof msg);
        memcpy(msg, &i, sizeof i);
        CHECK_RC(esock_send(c, 0, 0, 0, msg, sizeof msg, NULL), 0);
    }
    if (a->how == TURN_ENDS)
        return; /* the endpoint stays: the connection ends with its owner, gracefully */
    if (a->how == TURN_BLOCKS)
        rt_msg_free(wait_tag(7)); /* nothing else can push them out meanwhile */
    CHECK_RC(esock_assoc_shutdown(c), 0);
    rt_msg *m = wait_for(ESOCK_MSG_ASSOC_DOWN, c);
    CHECK(esock_down_of(m)->reason == ESOCK_DOWN_SHUTDOWN && esock_down_of(m)->error == 0);
    rt_msg_free(m);
    CHECK_RC(esock_ep_close(cep), 0);
}

/* The peer's side: n messages, whole and in order. */
static void read_turn_msgs(int fd, unsigned n)
{
    unsigned char got[4 + TURN_MSG], want[TURN_MSG];
    for (uint32_t i = 0; i < n; i++) {
        raw_read(fd, got, sizeof got);
        CHECK(got[0] == 0 && got[1] == 0 && got[2] == 0 && got[3] == TURN_MSG);
        memset(want, (int)(i & 0xff), sizeof want);
        memcpy(want, &i, sizeof i);
        CHECK(memcmp(got + 4, want, sizeof want) == 0);
    }
}

/* Start a turn_sender (monitored), accept its connection from `l`, and
 * give it the go. */
static int turn_start(struct turn_arg *a, int l, rt_pid *pid)
{
    rt_ref mon;
    CHECK_RC(rt_spawn(turn_sender, a, NULL, pid), 0);
    CHECK_RC(rt_monitor(*pid, &mon), 0);
    int fd = raw_accept(l);
    rt_msg_free(wait_tag(5));
    CHECK_RC(rt_send(*pid, 6, NULL, 0), 0);
    return fd;
}

/* The turn_sender ended, and well. */
static void turn_done(void)
{
    rt_msg *m = wait_tag(RT_MSG_DOWN);
    const rt_down_info *d = m->data;
    CHECK(d->reason == RT_EXIT_NORMAL);
    rt_msg_free(m);
}

static void turn_body(void *arg)
{
    (void)arg;
    uint16_t port;
    int l = raw_listen(&port);
    rt_pid s;

    /* a sender that blocks after its sends: they are out by then, in one
     * write after the first (each would be a segment of its own) */
    struct turn_arg a = {rt_self(), port, 40, TURN_BLOCKS};
    int fd = turn_start(&a, l, &s);
    read_turn_msgs(fd, a.n);
    unsigned segs = tcp_data_segs_in(fd);
    CHECK(segs >= 1 && segs <= 3);
    CHECK_RC(rt_send(s, 7, NULL, 0), 0);
    CHECK(raw_end(fd) == 0);
    close(fd); /* its end: the sender's shutdown is done */
    turn_done();

    /* one that shuts down in the same turn (more than a turn's sends, too),
     * and one that ends right after them (its connection is closed
     * gracefully): everything before the FIN */
    static const enum turn_end ends[] = {TURN_SHUTS_DOWN, TURN_ENDS};
    for (unsigned i = 0; i < sizeof ends / sizeof ends[0]; i++) {
        a = (struct turn_arg){rt_self(), port, 1000, ends[i]};
        fd = turn_start(&a, l, &s);
        read_turn_msgs(fd, a.n);
        CHECK(raw_end(fd) == 0);
        close(fd);
        turn_done();
    }
    close(l);
}

Test(esock_tcp, small_sends_go_out_together_by_the_end_of_the_senders_turn)
{
    /* one scheduler: the association's process stays beside its owner */
    es_start_n(1);
    run(turn_body, NULL);
    es_stop();
}

/* Several senders on one connection at once: processes beside the
 * association's (their small sends wait for the end of their turns), on
 * the other scheduler and a plain thread (theirs go out at once, after what
 * waits), in small and large messages. Each sender's messages arrive whole,
 * in its order, and all of them. */

#define MIX_SENDERS 4 /* 3 processes and a thread */
#define MIX_N       20000

struct mix_arg {
    esock_assoc c;
    uint32_t id;
    rt_pid test;
    _Atomic int rc; /* the thread's: 0, or the esock_send that failed */
};

static size_t mix_len(uint32_t seq)
{
    return seq % 97 == 0 ? 3000 : 8 + seq % 50; /* every 97th beyond ES_TCP_HOLD_MSG */
}

static unsigned char mix_byte(uint32_t id, uint32_t seq, size_t i)
{
    return (unsigned char)(id * 31 + seq + i);
}

/* Send them all; returns 0 or the error. `pause` waits a little when the
 * queue is full (the owner, not the sender, gets SEND_READY). */
static int mix_send(struct mix_arg *a, void (*pause)(void))
{
    unsigned char msg[3000]; /* not _Thread_local: a process may move to another thread */
    for (uint32_t seq = 0; seq < MIX_N;) {
        size_t len = mix_len(seq);
        memcpy(msg, &a->id, 4);
        memcpy(msg + 4, &seq, 4);
        for (size_t i = 8; i < len; i++)
            msg[i] = mix_byte(a->id, seq, i);
        int rc = esock_send(a->c, 0, 0, 0, msg, len, NULL);
        if (rc == ESOCK_EWOULDBLOCK) {
            pause();
            continue;
        }
        if (rc != 0)
            return rc;
        seq++;
    }
    return 0;
}

static void mix_pause_proc(void)
{
    rt_sleep(1);
}

static void mix_pause_thread(void)
{
    usleep(1000);
}

static void mix_proc(void *arg)
{
    struct mix_arg *a = arg;
    CHECK_RC(mix_send(a, mix_pause_proc), 0);
}

static void *mix_thread(void *arg)
{
    struct mix_arg *a = arg;
    atomic_store(&a->rc, mix_send(a, mix_pause_thread));
    return NULL;
}

static void mix_body(void *arg)
{
    (void)arg;
    struct pair p;
    pair_up("127.0.0.1", ESOCK_FRAME_LEN32, &p);
    struct mix_arg a[MIX_SENDERS];
    rt_ref mon[MIX_SENDERS - 1];
    for (uint32_t i = 0; i < MIX_SENDERS; i++)
        a[i] = (struct mix_arg){.c = p.c, .id = i, .test = rt_self()};
    /* beside the test (and so beside its association), twice, and on
     * each scheduler by number (one of them the other) */
    int here = rt_sched_of(rt_self());
    CHECK(here >= 0);
    int where[MIX_SENDERS - 1] = {0, here + 1, (here + 1) % 2 + 1};
    for (int i = 0; i < MIX_SENDERS - 1; i++) {
        rt_pid pid;
        CHECK_RC(rt_spawn(mix_proc, &a[i], &(rt_spawn_opts){.sched = where[i]}, &pid), 0);
        CHECK_RC(rt_monitor(pid, &mon[i]), 0);
    }
    pthread_t th;
    CHECK(pthread_create(&th, NULL, mix_thread, &a[MIX_SENDERS - 1]) == 0);
    uint32_t next[MIX_SENDERS] = {0};
    unsigned got = 0, ended = 0;
    while (got < MIX_SENDERS * MIX_N || ended < MIX_SENDERS - 1) {
        rt_msg *m = NULL;
        CHECK(rt_receive(10000, &m) == 0);
        if (m->tag == RT_MSG_DOWN) {
            CHECK(((const rt_down_info *)m->data)->reason == RT_EXIT_NORMAL);
            ended++;
        }
        const esock_data *d = esock_data_of(m);
        if (d != NULL) {
            CHECK(d->assoc.id == p.s.id && d->len >= 8);
            uint32_t id, seq;
            memcpy(&id, d->data, 4);
            memcpy(&seq, (const char *)d->data + 4, 4);
            CHECK(id < MIX_SENDERS && seq == next[id] && d->len == mix_len(seq));
            for (size_t i = 8; i < d->len; i++)
                CHECK(((const unsigned char *)d->data)[i] == mix_byte(id, seq, i));
            next[id]++;
            got++;
        }
        rt_msg_free(m); /* and SEND_READY */
    }
    CHECK(pthread_join(th, NULL) == 0);
    CHECK_RC(atomic_load(&a[MIX_SENDERS - 1].rc), 0);
    for (int i = 0; i < MIX_SENDERS; i++)
        CHECK(next[i] == MIX_N);
    CHECK(rt_receive_tag(ESOCK_MSG_DATA, 50, &(rt_msg *){NULL}) == -ETIMEDOUT);
    pair_close(&p);
}

Test(esock_tcp, small_and_large_sends_of_several_senders_whole_in_order_and_all, .timeout = 120)
{
    es_start();
    run(mix_body, NULL);
    es_stop();
}
