/* ctx_check: the context switch alone (runtime/src/arch), built for the
 * host and, by ctx-aarch64.sh, cross-built for aarch64 and run under
 * qemu-user: two contexts ping-pong 2,000 times; integer and floating-point
 * values the compiler keeps in callee-saved registers survive, and the
 * entry function gets its argument. Exits 0 when all holds. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#include "ctx.h"

static struct ctx main_ctx, co;
static volatile int counter;

static void body(void *arg)
{
    ctx_started();
    double d = *(int *)arg * 1.5; /* lives in a callee-saved fp register across switches */
    long acc = 0;
    for (int i = 0; i < 1000; i++) {
        acc += i;
        counter++;
        ctx_switch(&co, &main_ctx, 0);
    }
    if (acc != 999 * 1000 / 2 || d != 63.0) {
        printf("co: lost state acc=%ld d=%f\n", acc, d);
        exit(1);
    }
    counter = -1;
    ctx_switch(&co, &main_ctx, 1);
}

int main(void)
{
    static char stack[64 * 1024] __attribute__((aligned(16)));
    int arg = 42;
    ctx_init(&co, stack, sizeof stack, body, &arg);
    /* what the sanitizers need to know about main's own stack, as a
     * scheduler thread tells them in sched.c */
    pthread_attr_t a;
    if (pthread_getattr_np(pthread_self(), &a) == 0) {
        pthread_attr_getstack(&a, &main_ctx.stack_lo, &main_ctx.stack_size);
        pthread_attr_destroy(&a);
    }
#ifdef RT_TSAN
    main_ctx.tsan_fiber = __tsan_get_current_fiber();
    co.tsan_fiber = __tsan_create_fiber(0);
#endif
    double keep = 3.25;
    long mine = 7;
    for (int i = 0; i < 1000; i++) {
        ctx_switch(&main_ctx, &co, 0);
        mine += 2;
        keep *= 1.0;
        if (counter != i + 1) {
            printf("main: counter %d at %d\n", counter, i);
            return 1;
        }
    }
    ctx_switch(&main_ctx, &co, 0);
    if (counter != -1 || mine != 2007 || keep != 3.25) {
        printf("main: lost state\n");
        return 1;
    }
    printf("context switch (%s): 2001 switches, state intact\n",
#if defined(__aarch64__)
           "aarch64"
#else
           "x86-64"
#endif
    );
    return 0;
}
