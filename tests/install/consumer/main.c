/* An outside program: starts the runtime, runs one process, asks esock for
 * its version. Exits 0 when all of it worked. */
#include <stdio.h>
#include <string.h>

#include <esock/esock.h>
#include <rt/rt.h>

static void hello(void *arg)
{
    rt_msg *m;
    if (rt_receive(1000, &m) == 0) {
        rt_send(m->from, 2, m->data, m->size);
        rt_msg_free(m);
    }
}

static void main_proc(void *arg)
{
    rt_pid p;
    rt_spawn(hello, NULL, NULL, &p);
    rt_send(p, 1, "ping", 5);
    rt_msg *m;
    if (rt_receive(1000, &m) != 0 || strcmp(m->data, "ping") != 0)
        rt_exit_self(-1);
    rt_msg_free(m);
}

int main(void)
{
    if (rt_start(NULL) != 0)
        return 1;
    rt_pid p;
    rt_spawn(main_proc, NULL, &(rt_spawn_opts){.joinable = true}, &p);
    int reason = -1;
    rt_join(p, 5000, &reason);
    rt_stats leaks;
    int rc = rt_stop(1000, &leaks);
    printf("consumer: esock %s, process exit %s, stop %d, leaks %llu\n", esock_version(),
           rt_strerror(reason), rc, (unsigned long long)(leaks.procs_live + leaks.msgs_live));
    return reason == 0 && rc == 0 && leaks.procs_live + leaks.msgs_live == 0 ? 0 : 1;
}
