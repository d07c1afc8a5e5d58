/* shim_threads.c - an alternate signal stack for every thread of the program.
 *
 * The shim's SIGSYS handler runs on an alternate stack (SA_ONSTACK): the fast
 * path of a migrated process marshals a call's buffers on it, and the
 * program's own stack may be small or nearly used up when a call traps.  The
 * kernel clears the alternate stack of a thread made with CLONE_VM (threads
 * never share the creator's), so each thread needs one of its own, set up in
 * the thread before any of the program's code runs in it.
 *
 * How: pthread_create is interposed.  The thread starts in start_thread(),
 * which maps a stack (with a guard page below it), installs it with
 * sigaltstack, takes the creator's SIGSYS shadow-mask bit (a new thread
 * starts with its creator's signal mask), and calls the program's routine.
 * The stack is unmapped when the thread ends, by a thread-specific-data
 * destructor, which runs on pthread_exit as well as on return (after it, a
 * trap in that thread runs the handler on the thread's own stack).
 *
 * Why not the other way, trapping clone itself in the shim's filter: the
 * child of a clone made inside the SIGSYS handler would start there, on the
 * stack the caller gave it, in the middle of a signal frame it does not own;
 * and glibc makes its threads with every signal blocked, so a trap would kill
 * them.  Threads not made through the exported pthread_create (glibc's own
 * helper threads, raw clone callers such as Go's runtime) run the handler on
 * their own stacks: at home it needs little (the mmap fix-up, SIGSTOP), and a
 * threaded process never migrates (it is pinned home: docs/SYSCALLS.md). */
#include "shim_threads.h"

#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#define EXPORT __attribute__((visibility("default")))

#define ALTSTACK_SIZE 65536 /* as the main thread's (preload_shim.c) */
#define GUARD_SIZE 4096

__thread int shim_sigsys_blocked __attribute__((tls_model("initial-exec")));

typedef int (*create_fn)(pthread_t *, const pthread_attr_t *, void *(*)(void *), void *);
static create_fn real_create;
static pthread_key_t stack_key;
static int ready; /* the shim is active and stack_key exists */

struct start {
    void *(*routine)(void *);
    void *arg;
    int sigsys_blocked;
};

/* The ending thread's stack: off (unless the program put its own in its
 * place), then unmapped. */
static void release_stack(void *mapping)
{
    stack_t now;
    if (sigaltstack(NULL, &now) != 0)
        return;
    if (now.ss_sp == (char *)mapping + GUARD_SIZE && !(now.ss_flags & SS_DISABLE)) {
        stack_t off = {.ss_flags = SS_DISABLE};
        if (sigaltstack(&off, NULL) != 0)
            return; /* in use (cannot be: not in a handler): keep it */
    }
    (void)munmap(mapping, GUARD_SIZE + ALTSTACK_SIZE); /* ours: nothing to do if it fails */
}

/* This thread's own alternate stack; without one (no memory) the handler
 * runs on the thread's stack. */
static void give_stack(void)
{
    void *mapping = mmap(NULL, GUARD_SIZE + ALTSTACK_SIZE, PROT_READ | PROT_WRITE,
                         MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
    if (mapping == MAP_FAILED)
        return;
    if (mprotect(mapping, GUARD_SIZE, PROT_NONE) != 0) {
        (void)munmap(mapping, GUARD_SIZE + ALTSTACK_SIZE);
        return;
    }
    stack_t ss = {.ss_sp = (char *)mapping + GUARD_SIZE, .ss_flags = 0, .ss_size = ALTSTACK_SIZE};
    if (sigaltstack(&ss, NULL) != 0 || pthread_setspecific(stack_key, mapping) != 0) {
        release_stack(mapping);
        return;
    }
}

static void *start_thread(void *p)
{
    struct start s = *(struct start *)p;
    free(p);
    shim_sigsys_blocked = s.sigsys_blocked;
    give_stack();
    return s.routine(s.arg);
}

int shim_threads_init(void)
{
    real_create = (create_fn)dlsym(RTLD_NEXT, "pthread_create");
    if (real_create == NULL || pthread_key_create(&stack_key, release_stack) != 0)
        return -1;
    ready = 1;
    return 0;
}

EXPORT int pthread_create(pthread_t *thread, const pthread_attr_t *attr,
                          void *(*routine)(void *), void *arg)
{
    if (real_create == NULL) /* before the shim's constructor (another library's) */
        real_create = (create_fn)dlsym(RTLD_NEXT, "pthread_create");
    if (real_create == NULL)
        return EAGAIN;
    if (!ready)
        return real_create(thread, attr, routine, arg);
    struct start *s = malloc(sizeof(*s));
    if (s == NULL)
        return EAGAIN; /* what pthread_create says when it lacks resources */
    s->routine = routine;
    s->arg = arg;
    s->sigsys_blocked = shim_sigsys_blocked;
    int r = real_create(thread, attr, start_thread, s);
    if (r != 0)
        free(s);
    return r;
}
