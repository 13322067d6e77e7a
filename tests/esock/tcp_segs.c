/* tcp_segs.c: what TCP_INFO says of a socket beyond glibc's struct
 * tcp_info (<linux/tcp.h> and <netinet/tcp.h> cannot meet in one file). */
#include <linux/tcp.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>

/* The data segments the socket has received; 0 when it cannot tell. */
unsigned tcp_data_segs_in(int fd);

unsigned tcp_data_segs_in(int fd)
{
    struct tcp_info ti;
    memset(&ti, 0, sizeof ti);
    socklen_t l = sizeof ti;
    if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &l) < 0)
        return 0;
    return ti.tcpi_data_segs_in;
}
