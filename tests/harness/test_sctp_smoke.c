/* test_sctp_smoke: the test harness reaches a real kernel SCTP stack.
 *
 * Two one-to-many (SOCK_SEQPACKET) sockets on the loopback address make an
 * association -- over IPv4 implicitly, by a sendmsg to the server's address;
 * over IPv6 with sctp_connectx -- and exchange one message each way on a
 * chosen stream with a chosen payload protocol id, read back with recvmsg
 * and the SCTP_RCVINFO cmsg (not libsctp's sctp_recvmsg, which reports zeros
 * for stream and ppid once SCTP_RECVRCVINFO is on). Both sides must see
 * SCTP_COMM_UP first. Every wait is a poll() with a timeout, so nothing can
 * hang. Without kernel SCTP the tests skip loudly (sctp_probe.h): run them
 * through tools/sctp-vm. */
#include <arpa/inet.h>
#include <netinet/sctp.h>
#include <poll.h>
#include <sys/utsname.h>

#include "sctp_probe.h"

#define WAIT_MS  5000
#define NSTREAMS 10

/* One message read from a socket: data or a notification. */
struct got {
    char data[1024];
    ssize_t len;
    int flags;
    struct sctp_rcvinfo info;
    bool has_info;
};

static socklen_t addr_len(const struct sockaddr_storage *a)
{
    return a->ss_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
}

/* A one-to-many socket bound to the loopback address on a kernel-chosen
 * port, listening, with RCVINFO, NODELAY, NSTREAMS streams and association
 * change events; its address goes to *addr. */
static int ep_open(int family, struct sockaddr_storage *addr)
{
    int fd = socket(family, SOCK_SEQPACKET, IPPROTO_SCTP);
    if (fd < 0 && family == AF_INET6 && errno == EAFNOSUPPORT)
        cr_skip_test("no IPv6 in this kernel");
    cr_assert_geq(fd, 0, "socket: %s", strerror(errno));

    int on = 1;
    cr_assert_eq(setsockopt(fd, IPPROTO_SCTP, SCTP_NODELAY, &on, sizeof on), 0, "SCTP_NODELAY: %s",
                 strerror(errno));
    cr_assert_eq(setsockopt(fd, IPPROTO_SCTP, SCTP_RECVRCVINFO, &on, sizeof on), 0,
                 "SCTP_RECVRCVINFO: %s", strerror(errno));
    struct sctp_initmsg im = {.sinit_num_ostreams = NSTREAMS, .sinit_max_instreams = NSTREAMS};
    cr_assert_eq(setsockopt(fd, IPPROTO_SCTP, SCTP_INITMSG, &im, sizeof im), 0, "SCTP_INITMSG: %s",
                 strerror(errno));
    struct sctp_event ev = {.se_type = SCTP_ASSOC_CHANGE, .se_on = 1};
    cr_assert_eq(setsockopt(fd, IPPROTO_SCTP, SCTP_EVENT, &ev, sizeof ev), 0, "SCTP_EVENT: %s",
                 strerror(errno));

    memset(addr, 0, sizeof *addr);
    if (family == AF_INET) {
        struct sockaddr_in *a = (struct sockaddr_in *)addr;
        a->sin_family = AF_INET;
        a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    } else {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)addr;
        a->sin6_family = AF_INET6;
        a->sin6_addr = in6addr_loopback;
    }
    socklen_t len = addr_len(addr);
    cr_assert_eq(bind(fd, (struct sockaddr *)addr, len), 0, "bind: %s", strerror(errno));
    cr_assert_eq(getsockname(fd, (struct sockaddr *)addr, &len), 0, "getsockname: %s",
                 strerror(errno));
    cr_assert_eq(addr->ss_family, family);
    cr_assert_neq(((struct sockaddr_in *)addr)->sin_port, 0, "no port after bind to port 0");
    cr_assert_eq(listen(fd, 8), 0, "listen: %s", strerror(errno));
    return fd;
}

/* Reads one whole message (data or notification) within WAIT_MS. */
static void recv_one(int fd, struct got *g)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    int n = poll(&p, 1, WAIT_MS);
    cr_assert_geq(n, 0, "poll: %s", strerror(errno));
    cr_assert_eq(n, 1, "nothing to read within %d ms", WAIT_MS);

    char cbuf[CMSG_SPACE(sizeof(struct sctp_rcvinfo))];
    struct iovec iov = {.iov_base = g->data, .iov_len = sizeof g->data - 1};
    struct msghdr mh = {
        .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf, .msg_controllen = sizeof cbuf};
    g->len = recvmsg(fd, &mh, 0);
    cr_assert_geq(g->len, 0, "recvmsg: %s", strerror(errno));
    g->data[g->len] = 0;
    g->flags = mh.msg_flags;
    cr_assert(g->flags & MSG_EOR, "a message of %zd bytes came without MSG_EOR", g->len);
    cr_assert_not(g->flags & MSG_CTRUNC, "control data truncated");
    g->has_info = false;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
        if (c->cmsg_level == IPPROTO_SCTP && c->cmsg_type == SCTP_RCVINFO) {
            cr_assert_geq(c->cmsg_len, CMSG_LEN(sizeof g->info));
            memcpy(&g->info, CMSG_DATA(c), sizeof g->info);
            g->has_info = true;
        }
    }
}

/* Reads until a data message, passing over notifications; returns the
 * association id of the SCTP_COMM_UP among them, 0 if there was none. */
static sctp_assoc_t recv_data(int fd, struct got *g)
{
    sctp_assoc_t up = 0;
    for (int i = 0; i < 8; i++) {
        recv_one(fd, g);
        if (!(g->flags & MSG_NOTIFICATION))
            return up;
        const union sctp_notification *n = (const void *)g->data;
        cr_assert_geq(g->len, (ssize_t)sizeof n->sn_header, "short notification");
        if (n->sn_header.sn_type == SCTP_ASSOC_CHANGE) {
            cr_assert_geq(g->len, (ssize_t)sizeof n->sn_assoc_change);
            const struct sctp_assoc_change *ac = &n->sn_assoc_change;
            cr_assert_eq(ac->sac_state, SCTP_COMM_UP, "association change to state %u, error %u",
                         (unsigned)ac->sac_state, (unsigned)ac->sac_error);
            cr_assert_eq(ac->sac_outbound_streams, NSTREAMS, "%u outbound streams, asked for %d",
                         (unsigned)ac->sac_outbound_streams, NSTREAMS);
            up = ac->sac_assoc_id;
        }
    }
    cr_assert_fail("no data after 8 notifications");
    return 0;
}

/* Sends one message on stream sid with payload protocol id ppid (host
 * order here, network order on the wire), to the association id or, when
 * to is given, to that address (setting the association up if need be). */
static void send_msg(int fd, const struct sockaddr_storage *to, sctp_assoc_t id, uint16_t sid,
                     uint32_t ppid, const char *text)
{
    struct sctp_sndinfo si = {.snd_sid = sid, .snd_ppid = htonl(ppid), .snd_assoc_id = id};
    union {
        char buf[CMSG_SPACE(sizeof(struct sctp_sndinfo))];
        struct cmsghdr align;
    } cbuf;
    memset(&cbuf, 0, sizeof cbuf);
    struct iovec iov = {.iov_base = (void *)text, .iov_len = strlen(text)};
    struct msghdr mh = {.msg_name = (void *)to,
                        .msg_namelen = to ? addr_len(to) : 0,
                        .msg_iov = &iov,
                        .msg_iovlen = 1,
                        .msg_control = cbuf.buf,
                        .msg_controllen = sizeof cbuf.buf};
    struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
    c->cmsg_level = IPPROTO_SCTP;
    c->cmsg_type = SCTP_SNDINFO;
    c->cmsg_len = CMSG_LEN(sizeof si);
    memcpy(CMSG_DATA(c), &si, sizeof si);

    struct pollfd p = {.fd = fd, .events = POLLOUT};
    cr_assert_eq(poll(&p, 1, WAIT_MS), 1, "not writable within %d ms", WAIT_MS);
    cr_assert_eq(sendmsg(fd, &mh, MSG_DONTWAIT), (ssize_t)strlen(text), "sendmsg: %s",
                 strerror(errno));
}

static void check_data(const struct got *g, const char *text, uint16_t sid, uint32_t ppid)
{
    cr_assert_eq(g->len, (ssize_t)strlen(text));
    cr_assert_str_eq(g->data, text);
    cr_assert(g->has_info, "no SCTP_RCVINFO cmsg with the message");
    cr_assert_eq(g->info.rcv_sid, sid, "stream %u, expected %u", (unsigned)g->info.rcv_sid,
                 (unsigned)sid);
    cr_assert_eq(ntohl(g->info.rcv_ppid), ppid, "ppid %u, expected %u",
                 (unsigned)ntohl(g->info.rcv_ppid), (unsigned)ppid);
    cr_assert_neq(g->info.rcv_assoc_id, 0, "rcv_assoc_id is 0");
}

/* A ping on stream 3 (ppid 46) and a pong on stream 5 (ppid 60). */
static void exchange(int family, bool implicit)
{
    TEST_REQUIRE_SCTP();
    struct sockaddr_storage sa, ca;
    int srv = ep_open(family, &sa);
    int cli = ep_open(family, &ca);

    sctp_assoc_t cid = 0;
    if (implicit) {
        send_msg(cli, &sa, 0, 3, 46, "ping over SCTP");
    } else {
        cr_assert_eq(sctp_connectx(cli, (struct sockaddr *)&sa, 1, &cid), 0, "sctp_connectx: %s",
                     strerror(errno));
        cr_assert_neq(cid, 0, "sctp_connectx gave association id 0");
        send_msg(cli, NULL, cid, 3, 46, "ping over SCTP");
    }

    struct got g;
    sctp_assoc_t sup = recv_data(srv, &g);
    cr_assert_neq(sup, 0, "the server saw no SCTP_COMM_UP before the data");
    check_data(&g, "ping over SCTP", 3, 46);
    cr_assert_eq(g.info.rcv_assoc_id, sup, "data and COMM_UP name different associations");

    send_msg(srv, NULL, g.info.rcv_assoc_id, 5, 60, "pong over SCTP");
    sctp_assoc_t cup = recv_data(cli, &g);
    cr_assert_neq(cup, 0, "the client saw no SCTP_COMM_UP before the data");
    check_data(&g, "pong over SCTP", 5, 60);
    cr_assert_eq(g.info.rcv_assoc_id, cup, "data and COMM_UP name different associations");
    if (!implicit)
        cr_assert_eq(cup, cid, "COMM_UP names another association than sctp_connectx");

    cr_assert_eq(close(cli), 0, "close: %s", strerror(errno));
    cr_assert_eq(close(srv), 0, "close: %s", strerror(errno));
}

/* Shows in the test output which kernel the SCTP tests ran on: logged with
 * cr_log_info (shown with --verbose) and on stderr (Criterion's default
 * verbosity, as the suite runs it, hides info logs). */
Test(harness_sctp, kernel_release, .timeout = 30)
{
    struct utsname u;
    cr_assert_eq(uname(&u), 0, "uname: %s", strerror(errno));
    cr_log_info("kernel %s %s on %s", u.sysname, u.release, u.machine);
    fprintf(stderr, "harness_sctp: running on kernel %s %s (%s), SCTP %s\n", u.sysname, u.release,
            u.machine, test_host_has_sctp() ? "available" : "missing");
    TEST_REQUIRE_SCTP();
    cr_assert_eq(access("/proc/net/sctp", F_OK), 0,
                 "SCTP sockets open but /proc/net/sctp is missing");
}

Test(harness_sctp, exchange_ipv4_implicit_setup, .timeout = 30)
{
    exchange(AF_INET, true);
}

Test(harness_sctp, exchange_ipv6_connectx, .timeout = 30)
{
    exchange(AF_INET6, false);
}
