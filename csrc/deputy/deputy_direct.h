/* deputy_direct.h - the deputy's servers of the direct channels, one thread per
 * channel (deputy_direct.c): each executes its channel's calls at home on its
 * own, so a call that blocks there holds no other thread's calls. */
#ifndef MOSIX_DEPUTY_DIRECT_H
#define MOSIX_DEPUTY_DIRECT_H

#include <signal.h>
#include <stddef.h>
#include <stdint.h>

/* What mosix_deputy.c lends the servers. */
struct direct_hooks {
    /* A call naming one of the deputy's descriptors: 1 with *ret set when answered. */
    int (*own_fd_call)(long nr, const uint64_t a[6], int64_t *ret);
    /* The process ends with a line (lost()). */
    void (*fatal)(const char *what, int err) __attribute__((noreturn));
};

/* Set by the deputy's signal handler in the thread that a poke (SIGIO sent by
 * the deputy itself, SI_TKILL) reached. */
extern __thread volatile sig_atomic_t direct_poked;

void direct_init(const struct direct_hooks *hooks);

/* New channels (the agent's "deputy-channel"): a server thread for each; the
 * descriptors are the servers' from now on.  The old ones end first. */
void direct_start(const int *fds, int n);

/* The channels are gone (the copy left, ended, or the channel broke): each
 * server closes its own and ends, a call in progress interrupted (its reply
 * is dropped). */
void direct_retire(void);

/* Wait until the retired servers have all ended: a call one had taken before
 * the channels went (a write of the program's, say) is done and noted, and
 * none comes after.  Before the process resumes from a checkpoint here, whose
 * rewind must see the files as they are left (deputy_resume.c). */
void direct_drain(void);

/* HOLD (1) and RESUME (0): while held the servers read no requests; a call
 * blocked at home is interrupted and answered FWD_RET_AGAIN. */
void direct_hold(int on);

/* Held and every server waiting (no call in progress, none half-read): the bytes
 * sent on the direct channels, all together, since they came (HELD's count);
 * -1 when some server is still busy (it is poked again). */
int64_t direct_held_bytes(void);

/* SIGNAL frames: n more sent to the supervisor; one acknowledged (SIGNALED);
 * the channel's count starts again.  A reply waits until every signal passed so
 * far is acknowledged (delivered to the copy, where it arrives as the call
 * returns). */
void direct_signals_sent(unsigned long n);
void direct_signal_acked(void);

/* A program's signal was passed on: calls in progress are interrupted, as the
 * signal would have interrupted them at home (EINTR, then the shim decides). */
void direct_interrupt_calls(void);

/* Whether fd is a direct channel's; relocate one that a call of the program
 * names as its target (dup2) out of the way. */
int direct_is_own(long fd);
void direct_relocate(int fd);

#endif
