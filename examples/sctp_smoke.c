/* sctp_smoke: the kernel SCTP path this project is built on, end to end.
 *
 * Opens a one-to-many SCTP socket (the kind an esock endpoint owns) on
 * 127.0.0.1, associates a second socket with it, and sends one message each
 * way on a chosen stream with a chosen payload protocol id, read back from
 * the SCTP_RCVINFO ancillary data. Prints each step; exits 0 on success,
 * 1 on any failure, 77 when the kernel has no SCTP (run it through
 * tools/sctp-vm then).
 *
 * Until the esock library's own example replaces it, this is the README's
 * main job.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/sctp.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <esock/esock.h>

#define CHECK(expr)                                                                                \
    do {                                                                                           \
        if ((expr) < 0) {                                                                          \
            fprintf(stderr, "sctp_smoke: %s: %s\n", #expr, strerror(errno));                       \
            return -1;                                                                             \
        }                                                                                          \
    } while (0)

static int open_endpoint(struct sockaddr_in *addr)
{
    int fd = socket(AF_INET, SOCK_SEQPACKET, IPPROTO_SCTP);
    CHECK(fd);
    int on = 1;
    struct sctp_initmsg init = {.sinit_num_ostreams = 10, .sinit_max_instreams = 10};
    CHECK(setsockopt(fd, IPPROTO_SCTP, SCTP_NODELAY, &on, sizeof on));
    CHECK(setsockopt(fd, IPPROTO_SCTP, SCTP_RECVRCVINFO, &on, sizeof on));
    CHECK(setsockopt(fd, IPPROTO_SCTP, SCTP_INITMSG, &init, sizeof init));
    *addr = (struct sockaddr_in){.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    CHECK(bind(fd, (struct sockaddr *)addr, sizeof *addr));
    socklen_t len = sizeof *addr;
    CHECK(getsockname(fd, (struct sockaddr *)addr, &len));
    CHECK(listen(fd, 8));
    return fd;
}

static int send_on(int fd, const struct sockaddr_in *to, sctp_assoc_t assoc, uint16_t stream,
                   uint32_t ppid, const char *text)
{
    char cbuf[CMSG_SPACE(sizeof(struct sctp_sndinfo))] = {0};
    struct iovec iov = {.iov_base = (void *)text, .iov_len = strlen(text)};
    struct msghdr mh = {.msg_name = (void *)to,
                        .msg_namelen = to ? sizeof *to : 0,
                        .msg_iov = &iov,
                        .msg_iovlen = 1,
                        .msg_control = cbuf,
                        .msg_controllen = sizeof cbuf};
    struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
    c->cmsg_level = IPPROTO_SCTP;
    c->cmsg_type = SCTP_SNDINFO;
    c->cmsg_len = CMSG_LEN(sizeof(struct sctp_sndinfo));
    struct sctp_sndinfo si = {.snd_sid = stream, .snd_ppid = htonl(ppid), .snd_assoc_id = assoc};
    memcpy(CMSG_DATA(c), &si, sizeof si);
    CHECK(sendmsg(fd, &mh, 0));
    return 0;
}

/* Receive one data message (notifications are skipped). */
static int recv_on(int fd, char *buf, size_t cap, struct sctp_rcvinfo *info)
{
    for (;;) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, 5000) != 1) {
            fprintf(stderr, "sctp_smoke: nothing arrived within 5 s\n");
            return -1;
        }
        char cbuf[CMSG_SPACE(sizeof(struct sctp_rcvinfo))];
        struct iovec iov = {.iov_base = buf, .iov_len = cap - 1};
        struct msghdr mh = {
            .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf, .msg_controllen = sizeof cbuf};
        ssize_t n = recvmsg(fd, &mh, 0);
        CHECK(n);
        if (mh.msg_flags & MSG_NOTIFICATION)
            continue;
        buf[n] = 0;
        memset(info, 0, sizeof *info);
        for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c))
            if (c->cmsg_level == IPPROTO_SCTP && c->cmsg_type == SCTP_RCVINFO)
                memcpy(info, CMSG_DATA(c), sizeof *info);
        return (int)n;
    }
}

static int exchange(void)
{
    struct sockaddr_in a_addr, b_addr;
    int a = open_endpoint(&a_addr);
    int b = open_endpoint(&b_addr);
    if (a < 0 || b < 0)
        return -1;
    printf("endpoint A on 127.0.0.1:%u, endpoint B on 127.0.0.1:%u\n", ntohs(a_addr.sin_port),
           ntohs(b_addr.sin_port));

    char buf[256];
    struct sctp_rcvinfo ri;
    if (send_on(b, &a_addr, 0, 3, 46, "hello from B") < 0 || recv_on(a, buf, sizeof buf, &ri) < 0)
        return -1;
    printf("A got \"%s\" on stream %u, ppid %u, association %d\n", buf, ri.rcv_sid,
           ntohl(ri.rcv_ppid), (int)ri.rcv_assoc_id);
    if (strcmp(buf, "hello from B") || ri.rcv_sid != 3 || ntohl(ri.rcv_ppid) != 46)
        return -1;

    if (send_on(a, NULL, ri.rcv_assoc_id, 5, 60, "hello from A") < 0 ||
        recv_on(b, buf, sizeof buf, &ri) < 0)
        return -1;
    printf("B got \"%s\" on stream %u, ppid %u, association %d\n", buf, ri.rcv_sid,
           ntohl(ri.rcv_ppid), (int)ri.rcv_assoc_id);
    if (strcmp(buf, "hello from A") || ri.rcv_sid != 5 || ntohl(ri.rcv_ppid) != 60)
        return -1;
    close(a);
    close(b);
    return 0;
}

int main(void)
{
    struct utsname u;
    uname(&u);
    printf("sctp_smoke (esock %s) on kernel %s\n", esock_version(), u.release);
    int rc = esock_sctp_available();
    if (rc < 0) {
        printf("this kernel has no SCTP (%s): run it through tools/sctp-vm\n", strerror(-rc));
        return 77;
    }
    if (exchange() < 0) {
        printf("sctp_smoke: FAILED\n");
        return 1;
    }
    printf("sctp_smoke: OK, one message each way with stream and ppid intact\n");
    return 0;
}
