/* esock.c: version and the kernel SCTP probe. */
#include <errno.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <esock/esock.h>

ESOCK_API const char *esock_version(void)
{
    return "0.1.0";
}

ESOCK_API int esock_sctp_available(void)
{
    /* a kernel without SCTP answers ESOCKTNOSUPPORT for SOCK_SEQPACKET and
     * EPROTONOSUPPORT for SOCK_STREAM (TEST-VM.md): both mean "no" */
    int fd = socket(AF_INET, SOCK_SEQPACKET | SOCK_CLOEXEC, IPPROTO_SCTP);
    if (fd < 0)
        return -errno;
    close(fd);
    return 0;
}
