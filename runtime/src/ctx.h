/* ctx.h: the context-switch contract (arch/ctx_*.S) and its sanitizer
 * bookkeeping. A context is a saved stack pointer; everything else lives on
 * its stack. */
#ifndef RT_CTX_H
#define RT_CTX_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#if defined(__SANITIZE_ADDRESS__)
#define RT_ASAN 1
#include <sanitizer/common_interface_defs.h>
#endif
#if defined(__SANITIZE_THREAD__)
#define RT_TSAN 1
#include <sanitizer/tsan_interface.h>
#endif

void rt__ctx_switch(void **save_sp, void *new_sp);
void rt__ctx_entry(void);

/* A context and what the sanitizers need to know about its stack. */
struct ctx {
    void *sp;
    void *stack_lo; /* lowest usable byte of the stack */
    size_t stack_size;
#ifdef RT_ASAN
    void *fake_stack;
#endif
#ifdef RT_TSAN
    void *tsan_fiber;
#endif
};

/* Prepare `c` to run fn(arg) on [lo, lo + size) at its first switch-in. */
static inline void ctx_init(struct ctx *c, void *lo, size_t size, void (*fn)(void *), void *arg)
{
    uintptr_t top = ((uintptr_t)lo + size) & ~(uintptr_t)15;
#if defined(__x86_64__)
    /* Frame popped by rt__ctx_switch: csr, r15, r14, r13, r12, rbx, rbp, ret.
     * top - 80 is 16-aligned, so rsp is 16-aligned after `ret`, as the
     * `call` in rt__ctx_entry requires. */
    uint64_t *f = (uint64_t *)(top - 80);
    uint32_t csr[2] = {0x1F80, 0x037F}; /* MXCSR and x87 control word defaults */
    memcpy(&f[0], csr, sizeof csr);
    f[1] = 0;                        /* r15 */
    f[2] = 0;                        /* r14 */
    f[3] = (uint64_t)(uintptr_t)arg; /* r13 */
    f[4] = (uint64_t)(uintptr_t)fn;  /* r12 */
    f[5] = 0;                        /* rbx */
    f[6] = 0;                        /* rbp: ends frame-pointer walks */
    f[7] = (uint64_t)(uintptr_t)rt__ctx_entry;
    c->sp = f;
#elif defined(__aarch64__)
    uint64_t *f = (uint64_t *)(top - 160);
    memset(f, 0, 160);
    f[0] = (uint64_t)(uintptr_t)fn;             /* x19 */
    f[1] = (uint64_t)(uintptr_t)arg;            /* x20 */
    f[11] = (uint64_t)(uintptr_t)rt__ctx_entry; /* x30 */
    c->sp = f;
#else
#error "no context switch for this architecture"
#endif
    c->stack_lo = lo;
    c->stack_size = size;
}

/* Switch from `from` to `to`. `from_done`: `from` will never run again, so
 * ASan may drop its fake stack. */
static inline void ctx_switch(struct ctx *from, struct ctx *to, int from_done)
{
#ifdef RT_ASAN
    __sanitizer_start_switch_fiber(from_done ? NULL : &from->fake_stack, to->stack_lo,
                                   to->stack_size);
#else
    (void)from_done;
#endif
#ifdef RT_TSAN
    __tsan_switch_to_fiber(to->tsan_fiber, 0);
#endif
    rt__ctx_switch(&from->sp, to->sp);
#ifdef RT_ASAN
    __sanitizer_finish_switch_fiber(from->fake_stack, NULL, NULL);
#endif
}

/* First code a new context runs: completes the switch for ASan. */
static inline void ctx_started(void)
{
#ifdef RT_ASAN
    __sanitizer_finish_switch_fiber(NULL, NULL, NULL);
#endif
}

#endif
