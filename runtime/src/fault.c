/* fault.c: a stackful process that overflows its stack dies alone.
 *
 * Every scheduler thread has an alternate signal stack, and the runtime
 * installs a SIGSEGV/SIGBUS handler while it runs. A fault inside the guard
 * page of the running process's stack is a stack overflow: the handler
 * writes one line naming the process to stderr, marks it as exiting with
 * RT_EXIT_STACK_OVERFLOW and switches from the signal stack straight back
 * to the scheduler, which ends the process like any other (links and
 * monitors are told). Any other fault is not ours: the previous handler is
 * put back and the faulting instruction runs again under it.
 *
 * This is best effort: a process that overflowed while holding a lock (in
 * malloc, say) leaves it held. Under AddressSanitizer and ThreadSanitizer
 * the sanitizer's own handler reports the overflow instead.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"

#if !defined(RT_ASAN) && !defined(RT_TSAN)
#define FAULT_HANDLING 1
#endif

#define ALTSTACK_SIZE (64u * 1024u)

#ifdef FAULT_HANDLING
static struct sigaction old_segv, old_bus;
static _Atomic int installed;

static void put_back(int sig)
{
    sigaction(sig, sig == SIGSEGV ? &old_segv : &old_bus, NULL);
}

static size_t fmt_u32(char *out, uint32_t v)
{
    char tmp[10];
    size_t n = 0, i = 0;
    do
        tmp[n++] = (char)('0' + v % 10);
    while ((v /= 10) != 0);
    while (n)
        out[i++] = tmp[--n];
    return i;
}

static void on_fault(int sig, siginfo_t *si, void *uctx)
{
    struct sched *s = rt__sched_self();
    struct proc *p = s ? s->cur : NULL;
    if (p && p->kind == PROC_STACKFUL && p->u.s.stack && p->u.s.stack->guarded) {
        char *a = si->si_addr;
        char *guard = p->u.s.stack->map;
        if (a >= guard && a < (char *)p->u.s.stack->lo) {
            /* async-signal-safe formatting: no stdio here */
            char line[128];
            size_t n = 0;
            const char *h = "rt: stack overflow in process <";
            memcpy(line, h, strlen(h));
            n += strlen(h);
            n += fmt_u32(line + n, p->idx);
            line[n++] = '.';
            n += fmt_u32(line + n, p->gen);
            const char *t = ">: it exits with RT_EXIT_STACK_OVERFLOW\n";
            memcpy(line + n, t, strlen(t));
            n += strlen(t);
            ssize_t w = write(STDERR_FILENO, line, n);
            (void)w;
            rt__proc_set_exit(p, RT_EXIT_STACK_OVERFLOW);
            p->state = PS_EXIT;
            /* leave the signal stack for good: the scheduler ends p */
            rt__ctx_switch(&p->u.s.ctx.sp, s->ctx.sp);
        }
    }
    put_back(sig);
}
#endif

int rt__fault_install(void)
{
#ifdef FAULT_HANDLING
    if (atomic_exchange_explicit(&installed, 1, memory_order_relaxed))
        return 0;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_fault;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_NODEFER;
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGSEGV, &sa, &old_segv) != 0 || sigaction(SIGBUS, &sa, &old_bus) != 0)
        return -1;
#endif
    return 0;
}

void rt__fault_uninstall(void)
{
#ifdef FAULT_HANDLING
    if (atomic_exchange_explicit(&installed, 0, memory_order_relaxed)) {
        sigaction(SIGSEGV, &old_segv, NULL);
        sigaction(SIGBUS, &old_bus, NULL);
    }
#endif
}

/* Give the calling scheduler thread its signal stack; returns it (to free). */
void *rt__fault_thread_init(void)
{
#ifdef FAULT_HANDLING
    void *mem = malloc(ALTSTACK_SIZE);
    if (mem == NULL)
        return NULL;
    stack_t ss = {.ss_sp = mem, .ss_size = ALTSTACK_SIZE, .ss_flags = 0};
    if (sigaltstack(&ss, NULL) != 0) {
        free(mem);
        return NULL;
    }
    return mem;
#else
    return NULL;
#endif
}

void rt__fault_thread_fini(void *mem)
{
#ifdef FAULT_HANDLING
    if (mem) {
        stack_t ss = {.ss_flags = SS_DISABLE};
        sigaltstack(&ss, NULL);
        free(mem);
    }
#endif
}
