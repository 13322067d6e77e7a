/* test_sctp_smoke: the test harness reaches a real kernel SCTP stack.
 *
 * A one-to-many socket on 127.0.0.1 (and one on ::1), an association from a
 * second one-to-many socket made with sctp_connectx, a COMM_UP
 * notification, and one message each way whose stream id and payload
 * protocol id are read back from SCTP_RCVINFO. */
#include <arpa/inet.h>
#include <netinet/sctp.h>
#include <poll.h>
#include <sys/utsname.h>

#include "sctp_probe.h"

struct got {
    char data[256];
    ssize_t len;
    int flags;
    struct sctp_rcvinfo info;
    bool has_info;
};

static int ep_open(int family, struct sockaddr_storage *addr)
{
    int fd = socket(family, SOCK_SEQPACKET, IPPROTO_SCTP);
    cr_assert_geq(fd, 0, "socket: %s", strerror(errno));
    int on = 1;
    struct sctp_initmsg im = {.sinit_num_ostreams = 10, .sinit_max_instreams = 10};
    cr_assert_eq(setsockopt(fd, IPPROTO_SCTP, SCTP_NODELAY, &on, sizeof on), 0);
    cr_assert_eq(setsockopt(fd, IPPROTO_SCTP, SCTP_RECVRCVINFO, &on, sizeof on), 0);
    cr_assert_eq(setsockopt(fd, IPPROTO_SCTP, SCTP_INITMSG, &im, sizeof im), 0);
    struct sctp_event ev = {.se_type = SCTP_ASSOC_CHANGE, .se_on = 1};
    cr_assert_eq(setsockopt(fd, IPPROTO_SCTP, SCTP_EVENT, &ev, sizeof ev), 0, "SCTP_EVENT: %s",
                 strerror(errno));
    memset(addr, 0, sizeof *addr);
    socklen_t len;
    if (family == AF_INET) {
        struct sockaddr_in *a = (struct sockaddr_in *)addr;
        a->sin_family = AF_INET;
        a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        len = sizeof *a;
    } else {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)addr;
        a->sin6_family = AF_INET6;
        a->sin6_addr = in6addr_loopback;
        len = sizeof *a;
    }
    cr_assert_eq(bind(fd, (struct sockaddr *)addr, len), 0, "bind: %s", strerror(errno));
    cr_assert_eq(getsockname(fd, (struct sockaddr *)addr, &len), 0);
    cr_assert_eq(listen(fd, 8), 0);
    return fd;
}

static void read_one(int fd, struct got *g)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    cr_assert_eq(poll(&p, 1, 5000), 1, "nothing to read within 5 s");
    char cbuf[CMSG_SPACE(sizeof(struct sctp_rcvinfo))];
    struct iovec iov = {.iov_base = g->data, .iov_len = sizeof g->data - 1};
    struct msghdr mh = {
        .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf, .msg_controllen = sizeof cbuf};
    g->len = recvmsg(fd, &mh, 0);
    cr_assert_geq(g->len, 0, "recvmsg: %s", strerror(errno));
    g->data[g->len] = 0;
    g->flags = mh.msg_flags;
    g->has_info = false;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
        if (c->cmsg_level == IPPROTO_SCTP && c->cmsg_type == SCTP_RCVINFO) {
            memcpy(&g->info, CMSG_DATA(c), sizeof g->info);
            g->has_info = true;
        }
    }
}

/* Read until a data message, checking notifications on the way; returns
 * whether a COMM_UP was among them. */
static bool read_data(int fd, struct got *g)
{
    bool up = false;
    for (int i = 0; i < 8; i++) {
        read_one(fd, g);
        if (!(g->flags & MSG_NOTIFICATION))
            return up;
        const struct sctp_assoc_change *ac = (const void *)g->data;
        if (ac->sac_type == SCTP_ASSOC_CHANGE && ac->sac_state == SCTP_COMM_UP)
            up = true;
    }
    cr_assert_fail("no data after 8 notifications");
    return up;
}

static void send_on(int fd, sctp_assoc_t id, const struct sockaddr_storage *to, uint16_t sid,
                    uint32_t ppid, const char *text)
{
    struct sctp_sndinfo si = {.snd_sid = sid, .snd_ppid = htonl(ppid), .snd_assoc_id = id};
    char cbuf[CMSG_SPACE(sizeof si)];
    memset(cbuf, 0, sizeof cbuf);
    struct iovec iov = {.iov_base = (void *)text, .iov_len = strlen(text)};
    struct msghdr mh = {.msg_name = (void *)to,
                        .msg_namelen = to ? (to->ss_family == AF_INET6 ? sizeof(struct sockaddr_in6)
                                                                       : sizeof(struct sockaddr_in))
                                          : 0,
                        .msg_iov = &iov,
                        .msg_iovlen = 1,
                        .msg_control = cbuf,
                        .msg_controllen = sizeof cbuf};
    struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
    c->cmsg_level = IPPROTO_SCTP;
    c->cmsg_type = SCTP_SNDINFO;
    c->cmsg_len = CMSG_LEN(sizeof si);
    memcpy(CMSG_DATA(c), &si, sizeof si);
    cr_assert_eq(sendmsg(fd, &mh, 0), (ssize_t)strlen(text), "sendmsg: %s", strerror(errno));
}

static void exchange(int family)
{
    TEST_REQUIRE_SCTP();
    struct sockaddr_storage sa, ca;
    int srv = ep_open(family, &sa);
    int cli = ep_open(family, &ca);
    sctp_assoc_t cid = 0;
    cr_assert_eq(sctp_connectx(cli, (struct sockaddr *)&sa, 1, &cid), 0, "sctp_connectx: %s",
                 strerror(errno));

    struct got g;
    send_on(cli, cid, NULL, 3, 46, "ping over SCTP");
    bool up = read_data(srv, &g);
    cr_assert(up, "the server saw no SCTP_COMM_UP before the data");
    cr_assert_str_eq(g.data, "ping over SCTP");
    cr_assert(g.has_info, "no SCTP_RCVINFO with the message");
    cr_assert_eq(g.info.rcv_sid, 3);
    cr_assert_eq(ntohl(g.info.rcv_ppid), 46);
    cr_assert_neq(g.info.rcv_assoc_id, 0);

    send_on(srv, g.info.rcv_assoc_id, NULL, 5, 60, "pong over SCTP");
    read_data(cli, &g);
    cr_assert_str_eq(g.data, "pong over SCTP");
    cr_assert(g.has_info);
    cr_assert_eq(g.info.rcv_sid, 5);
    cr_assert_eq(ntohl(g.info.rcv_ppid), 60);

    cr_assert_eq(close(cli), 0);
    cr_assert_eq(close(srv), 0);
}

Test(harness, kernel_release)
{
    TEST_REQUIRE_SCTP();
    struct utsname u;
    cr_assert_eq(uname(&u), 0);
    cr_log_info("SCTP tests run on kernel %s", u.release);
    cr_assert_eq(access("/proc/net/sctp", F_OK), 0, "/proc/net/sctp is missing");
}

Test(harness, exchange_ipv4)
{
    exchange(AF_INET);
}

Test(harness, exchange_ipv6)
{
    exchange(AF_INET6);
}
