/* es_test.h: what every esock test does: run its body in a stackful
 * process that is the owner, check inside it (a failed check ends the
 * process with a reason naming the line), wait for owner messages with a
 * bound, and run peers that are not ours as child processes. */
#ifndef ES_TEST_H
#define ES_TEST_H

#include <errno.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <esock/esock.h>

#include "rt_test.h"

static inline void es_stop(void)
{
    cr_assert_eq(esock_stop(), 0);
    test_stop();
}

/* Run body in a process; fail the test with its exit reason. It has as
 * long as the test's .timeout allows, less 5 s for the runner to report
 * what the body was doing (60 s without one). */
static inline void run(void (*body)(void *), void *arg)
{
    /* copied out, not read in place: Criterion's test records sit in a
     * section with no alignment for their doubles (UBSan: misaligned load) */
    struct criterion_test ct;
    struct criterion_test_extra_data xd;
    double t = 0;
    if (criterion_current_test) {
        memcpy(&ct, criterion_current_test, sizeof ct);
        if (ct.data) {
            memcpy(&xd, ct.data, sizeof xd);
            t = xd.timeout;
        }
    }
    int ms = t > 0 ? (int)(t * 1000) - (t > 10 ? 5000 : (int)(t * 100)) : 60000;
    int reason = test_run(body, arg, ms);
    cr_assert_eq(reason, 0, "the test process ended with %d (%s)", reason, esock_strerror(reason));
}

/* In a process: a check that ends the process with a line number. */
#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);               \
            rt_exit_self(-100000 - __LINE__);                                                      \
        }                                                                                          \
    } while (0)
#define CHECK_RC(expr, want)                                                                       \
    do {                                                                                           \
        int rc_ = (expr);                                                                          \
        if (rc_ != (want)) {                                                                       \
            fprintf(stderr, "%s:%d: %s = %d (%s), want %d\n", __FILE__, __LINE__, #expr, rc_,      \
                    esock_strerror(rc_), (int)(want));                                             \
            rt_exit_self(-100000 - __LINE__);                                                      \
        }                                                                                          \
    } while (0)

/* How long wait_tag and wait_for wait for a message that must come: a
 * limit for "it never came", with room for TSan in the emulated VM beside
 * the other tests (a run of Criterion's is parallel). */
#define WAIT_MS 30000

static inline rt_msg *wait_tag_at(uint32_t tag, int line)
{
    rt_msg *m = NULL;
    int rc = rt_receive_tag(tag, WAIT_MS, &m);
    if (rc != 0) {
        fprintf(stderr, "line %d: no message with tag 0x%x within %d s\n", line, tag,
                WAIT_MS / 1000);
        rt_exit_self(rc);
    }
    return m;
}
#define wait_tag(tag) wait_tag_at(tag, __LINE__)

struct want {
    uint32_t tag;
    uint64_t assoc;
};

static inline bool match_assoc(const rt_msg *m, void *arg)
{
    const struct want *w = arg;
    if (m->tag != w->tag)
        return false;
    const esock_down *d = esock_down_of(m);
    const esock_up *u = esock_up_of(m);
    const esock_reconnect_ev *r = esock_reconnect_of(m);
    const esock_data *da = esock_data_of(m);
    const esock_path *pa = esock_path_of(m);
    uint64_t id = d    ? d->assoc.id
                  : u  ? u->assoc.id
                  : r  ? r->assoc.id
                  : da ? da->assoc.id
                  : pa ? pa->assoc.id
                       : 0;
    return id == w->assoc;
}

/* The next message with `tag` about association `a`. */
static inline rt_msg *wait_for_at(uint32_t tag, esock_assoc a, int line)
{
    struct want w = {tag, a.id};
    rt_msg *m = NULL;
    int rc = rt_receive_match(match_assoc, &w, WAIT_MS, &m);
    if (rc != 0) {
        fprintf(stderr, "line %d: no message 0x%x for association %llx within %d s\n", line, tag,
                (unsigned long long)a.id, WAIT_MS / 1000);
        rt_exit_self(rc);
    }
    return m;
}
#define wait_for(tag, a) wait_for_at(tag, a, __LINE__)

extern char **environ;

/* Start `argv` with stdin from `in` (may be -1) and stdout+stderr into a
 * memfd (returned in *out). */
static inline pid_t spawn_peer(char *const argv[], int in, int *out)
{
    *out = memfd_create("peer-out", MFD_CLOEXEC);
    if (*out < 0)
        return -1;
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    if (in >= 0)
        posix_spawn_file_actions_adddup2(&fa, in, 0);
    posix_spawn_file_actions_adddup2(&fa, *out, 1);
    posix_spawn_file_actions_adddup2(&fa, *out, 2);
    pid_t pid;
    int rc = posix_spawnp(&pid, argv[0], &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    return rc == 0 ? pid : -1;
}

/* Wait for the peer without blocking the scheduler, sending it SIGINT
 * first when `kill_it`: its wait status; -1 if it could not be waited for
 * or outlived 30 s (then it is killed). */
static inline int reap(pid_t pid, bool kill_it)
{
    if (kill_it)
        kill(pid, SIGINT);
    int st;
    for (int64_t end = rt_now_ms() + 30000; rt_now_ms() < end;) {
        pid_t r = waitpid(pid, &st, WNOHANG);
        if (r == pid)
            return st;
        if (r < 0)
            return -1;
        rt_sleep(10);
    }
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    return -1;
}

static inline char *slurp(int fd)
{
    static char buf[16384];
    ssize_t n = pread(fd, buf, sizeof buf - 1, 0);
    buf[n > 0 ? n : 0] = 0;
    close(fd);
    return buf;
}

/* A supervised owner (its child spec's start function is sup_owner_start):
 * registers on the endpoint, says so to the test (tag 7), and forwards
 * everything to the test; a message with tag 2 makes it crash. */
struct sup_owner_arg {
    esock_ep ep;
    rt_pid test;
};

static inline void sup_owner(void *arg)
{
    const struct sup_owner_arg *a = arg;
    if (esock_owner_register(a->ep, rt_self(), NULL, NULL) != 0)
        rt_exit_self(-1);
    rt_send(a->test, 7, NULL, 0);
    rt_msg *m;
    while (rt_receive(RT_INFINITY, &m) == 0) {
        if (m->tag == 2) {
            rt_msg_free(m);
            rt_exit_self(-42);
        }
        rt_forward(a->test, m);
    }
}

static inline int sup_owner_start(void *arg, rt_pid *out)
{
    return rt_spawn(sup_owner, arg, &(rt_spawn_opts){.link = true}, out);
}

/* A one_for_one supervisor (linked to the caller) with the owner as its
 * permanent child "owner". */
static inline int sup_owner_tree(struct sup_owner_arg *oa, rt_pid *sup)
{
    rt_child_spec spec = {.id = "owner",
                          .start = sup_owner_start,
                          .arg = oa,
                          .restart = RT_PERMANENT,
                          .shutdown_ms = 1000};
    return rt_sup_start(&(rt_sup_flags){.intensity = 5, .period_ms = 5000}, &spec, 1, sup);
}

/* Stop a supervisor the caller started (and is linked to), and wait for it. */
static inline int sup_stop(rt_pid sup)
{
    rt_ref mon;
    int rc = rt_unlink(sup);
    if (rc == 0)
        rc = rt_monitor(sup, &mon);
    if (rc == 0)
        rc = rt_exit(sup, RT_EXIT_SHUTDOWN);
    rt_msg *m;
    if (rc == 0 && (rc = rt_receive_tag(RT_MSG_DOWN, 10000, &m)) == 0)
        rt_msg_free(m);
    return rc;
}

/* An accept callback that takes every association and records the stream
 * counts its peer came with. */
static _Atomic int seen_os = -1, seen_is = -1;

static inline bool record_streams(void *arg, esock_assoc a, const esock_peer *peer)
{
    (void)arg, (void)a;
    atomic_store(&seen_os, peer->ostreams);
    atomic_store(&seen_is, peer->istreams);
    return true;
}

#endif
