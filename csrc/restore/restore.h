/* restore.h - the restorer's parts (csrc/mosix_restore.c and csrc/restore_*.c).
 *
 * The restorer is a static program without libc: every system call is a raw
 * one (raw_syscall.h) and every result is checked.  It never returns an
 * error to a caller: a refusal prints one line on fd 2 and exits 125. */
#ifndef MOSIX_RESTORE_H
#define MOSIX_RESTORE_H

#include <stddef.h>
#include <stdint.h>
#include <asm/unistd_64.h>

#include "ckpt_format.h"
#include "ckpt_hash.h"
#include "raw_syscall.h"

#define EXIT_REFUSED 125

/* From the kernel's uapi headers that do not stand alone without libc. */
#define SS_ONSTACK 1
#define SS_DISABLE 2
#define SS_AUTODISARM (1u << 31)
#define UC_FP_XSTATE 0x1
#define UC_SIGCONTEXT_SS 0x2
#define UC_STRICT_RESTORE_SS 0x4
#define PAGE 4096ull
#define LEN(a) (sizeof(a) / sizeof((a)[0]))

/* Where the vdso and vvar wait while everything else is unmapped: the top of
 * the restorer's own range, which no image area may touch. */
#define SCRATCH_SPAN 0x100000ull
#define SCRATCH_BASE (MOSIX_CKPT_RESTORER_BASE + MOSIX_CKPT_RESTORER_SPAN - SCRATCH_SPAN)

/* ------------------------------------------------------------ restore_sys.c */

/* The one message line: "PREFIX: text\n". */
void msg_prefix(const char *prefix);
/* Where refusals are written (fd 2 unless -e): mosrun passes its own stderr, as
 * the image's fd 2 may be reopened on a file. */
void msg_fd(int fd);
void msg_tell_program(void);
int msg_fd_get(void);
void msg_begin(void);
void msg_str(const char *s);
void msg_hex(uint64_t v);
void msg_dec(uint64_t v);
void msg_err(long err); /* ": " and the errno's words */
void msg_range(uint64_t start, uint64_t end); /* 0xSTART-0xEND */
__attribute__((noreturn)) void msg_refuse(void);
__attribute__((noreturn)) void refuse(const char *text);

__attribute__((noreturn)) void sys_exit(int status);
int mem_equal(const void *a, const void *b, size_t n);

/* A whole small file (of /proc) in buf, NUL-terminated; returns its length.
 * Refuses if it cannot be read. */
size_t read_small_file(const char *path, char *buf, size_t cap);
/* Parses a hex number; returns the first character after it. */
const char *parse_hex(const char *p, uint64_t *out);

/* ------------------------------------------------------------ restore_image.c */

struct span {
    uint64_t start, end;
};

/* Room for the other threads' XSAVE areas (xsave_size bytes each): an image
 * whose threads need more is refused. */
#define THREAD_XSTATE_ROOM (4u << 20)

/* Room for the MAPFILE records' paths (NUL-terminated): more is refused. */
#define MAPFILE_PATHS_ROOM (512u << 10)

/* The image's state, read before memory (static buffers: no allocation). */
struct image {
    struct mosix_ckpt_process proc;
    struct mosix_ckpt_regs regs;
    struct mosix_ckpt_sigaction sigactions[64];
    unsigned char xstate[MOSIX_CKPT_MAX_XSAVE] __attribute__((aligned(64)));
    uint32_t files;
    uint64_t cloexec[MOSIX_CKPT_MAX_FILES / 64]; /* FILE records with FD_CLOEXEC */
    uint32_t nthreads; /* THREAD records: the threads besides the main one */
    struct mosix_ckpt_thread threads[MOSIX_CKPT_MAX_THREADS - 1];
    unsigned char thread_xstate[THREAD_XSTATE_ROOM] __attribute__((aligned(64)));
    uint32_t nsignals; /* SIGNAL records */
    struct mosix_ckpt_signal signals[MOSIX_CKPT_MAX_SIGNALS];
    uint32_t ntimers; /* TIMER records, in ascending id order */
    struct mosix_ckpt_timer timers[MOSIX_CKPT_MAX_TIMERS];
    uint32_t nmapfiles; /* MAPFILE records */
    struct mosix_ckpt_mapfile mapfiles[MOSIX_CKPT_MAX_MAPFILES];
    uint32_t mapfile_path[MOSIX_CKPT_MAX_MAPFILES]; /* where each one's path is in paths */
    uint32_t paths_used;
    char paths[MAPFILE_PATHS_ROOM];
};

/* Thread i's XSAVE area (i < nthreads). */
static inline const unsigned char *thread_xstate(const struct image *img, uint32_t i)
{
    return img->thread_xstate + (uint64_t)i * img->proc.xsave_size;
}

struct reader {
    int fd;
    int apply;             /* 0 under -c: verify, change nothing */
    uint32_t seq;          /* sequence number of the current record */
    struct mosix_ckpt_record_header rh;
    uint64_t left;         /* payload bytes of the current record not read yet */
    struct mxh64 hash;     /* of the payload read so far */
    int held;              /* rh was read ahead (after the pre-copy rounds): not consumed */
};

/* Memory areas as they stream past: the checks that need more than one record. */
struct memory {
    struct mosix_ckpt_area area; /* the current AREA */
    int have_area;
    uint64_t prev_end;           /* end of the previous area (ascending, no overlap) */
    uint64_t next_page;          /* lowest address the next PAGES may start at */
    uint32_t areas;
    uint64_t pages;
    uint32_t special_seen;       /* VDSO | VVAR | VVAR_VCLOCK flags seen */
    int rip_ok, tid_ok, rseq_ok; /* resume address executable, tid/rseq writable */
    uint8_t thread_ok[MOSIX_CKPT_MAX_THREADS]; /* the same per thread: MEM_* bits */
    uint64_t ref_end;            /* a REFERENCE area: the end of the pages its file has */
    struct mxh64 ref_hash[MOSIX_CKPT_MAX_MAPFILES]; /* of each file's pages mapped so far */
};
#define MEM_RIP 1
#define MEM_TID 2
#define MEM_RSEQ 4
#define MEM_CLEAR_TID 8

void image_read_header(struct reader *r);
/* A migration's pre-copy rounds (PRE_AREA, PRE_PAGES) before PROCESS, if any:
 * on the first, the vdso and vvar are parked in the scratch range (cur follows)
 * and everything else is unmapped; the areas are mapped and filled as they come.
 * Returns 1 if there were any (the address space is then torn down already). */
struct specials;
int image_read_precopy(struct reader *r, struct specials *cur);
/* PROCESS..SIGACTIONS, THREAD..., SIGNAL..., TIMER...; leaves the next record's header
 * (AREA or END) read. */
void image_read_state(struct reader *r, struct image *img);
/* AREA/PAGES...END and the end of the stream; maps (apply) or just checks. */
void image_read_memory(struct reader *r, const struct image *img);

/* ------------------------------------------------------------ restore_mapfile.c */

/* Open path read-only; refuses, naming it, unless it is the file f describes. */
int mapfile_open(const struct mosix_ckpt_mapfile *f, const char *path);
void mapfile_close(int fd);
/* mapfile_open, then close: the check made before anything is changed. */
void mapfile_check(const struct mosix_ckpt_mapfile *f, const char *path);
/* Map the REFERENCE area a from its file (MAP_PRIVATE, writable until finished). */
void mapfile_map(const struct mosix_ckpt_area *a, const struct mosix_ckpt_mapfile *f,
                 const char *path);
/* The end of a's pages that the file has (past it: nothing to hash, SIGBUS). */
uint64_t mapfile_end_in(const struct mosix_ckpt_area *a, const struct mosix_ckpt_mapfile *f);
/* Refuse, naming the file, unless the pages mapped from it hashed to f->hash. */
void mapfile_verify(const struct mosix_ckpt_mapfile *f, const char *path, uint64_t hash);

/* ------------------------------------------------------------ restore_cpu.c */

void cpu_check(const struct image *img);
uint32_t cpu_mxcsr_mask(void);

/* ------------------------------------------------------------ restore_mem.c */

/* [vvar], [vvar_vclock], [vdso] of this process (end 0 if absent). */
struct specials {
    struct span vdso, vvar, vclock;
};
void mem_find_specials(struct specials *cur);
void mem_check_specials(const struct image *img, const struct specials *cur);
void mem_teardown(const struct specials *cur);
/* The three where mem_move_specials passes them (the scratch range): out of the
 * way of areas mapped before the image's state is known; cur follows them. */
void mem_park_specials(struct specials *cur);
void mem_unmap(uint64_t start, uint64_t end);
void mem_move_specials(const struct image *img, const struct specials *cur);
void mem_map_area(const struct mosix_ckpt_area *a);
void mem_finish_area(const struct mosix_ckpt_area *a);
void mem_populate(uint64_t addr, uint64_t len);

/* ------------------------------------------------------------ restore_state.c */

/* Migration modes (mosix_restore.c options -F, -H, -x). */
struct migration {
    int forward_sock; /* -F: where the forward filter's listener goes (-1: no) */
    int direct_fds[8]; /* -D (repeated): the direct channels to the deputy, one per thread
                        * that may call at once (FWD_DIRECT_MAX at most) */
    int directs;       /* how many -D */
    int home;         /* -H: back home: the filters are in force already */
    int time_here;    /* -t: with -F, the clocks are this node's: the vDSO stays as it is */
    int home_pid;     /* -P: with -F, the process's id at home (0: not told) */
    const char *cloexec_list;
};
extern struct migration migration;

void state_set_mm(const struct image *img);
void state_set_personality(const struct image *img);
void state_apply(const struct image *img);
__attribute__((noreturn)) void state_resume(const struct image *img, int fd);
__attribute__((noreturn)) void state_failed(const char *what, long rc);

/* ------------------------------------------------------------ restore_private.c */

/* Whether PRIVATE records are written into the directories here (-F, -H). */
int private_restoring(void);
/* A PRIVATE directory record's path (not NUL-terminated): the directory the
 * next files go to; it must be a tmpfs here. */
void private_directory(const char *path, size_t len);
/* The CWD record's path (len bytes, not NUL-terminated): a moving process whose
 * current directory is one of its private directories is put there when that
 * directory's record comes (its supervisor reads it from /proc: remote_private.c). */
void private_cwd(const char *path, size_t len);
/* A PRIVATE file record's name: the file, created or emptied, its mode set. */
int private_file_open(const char *name, size_t len, uint32_t mode);
/* A PRIVATE MORE record's name: the last file opened, again, to append to. */
int private_file_more(const char *name, size_t len, uint32_t mode);
void private_file_write(int fd, const void *buf, size_t n);
void private_file_close(int fd);

/* ------------------------------------------------------------ restore_tids.c */

/* After the memory, before the threads are made: the program's thread ids (the
 * image's) in the map, and the filter that traps the calls naming them (a
 * program with the shim's handler, recovered or moved; else nothing). */
void tids_prepare(const struct image *img);
/* Whether the threads keep the image's ids in their control blocks. */
int tids_translated(void);
/* After the threads are made: the kernel's ids in the map. */
void tids_note_kernel(const struct image *img);

/* ------------------------------------------------------------ restore_threads.c */

/* The words the threads and the main one meet at (the trampoline's second page). */
struct barrier {
    uint32_t go;    /* 0 until every thread may resume */
    uint32_t ready; /* threads that have set their state and wait */
    uint32_t left;  /* threads that have not passed the barrier yet */
    uint32_t pad;
};
/* Where each thread's rt_sigreturn frame (its ucontext) is: frames[i] for thread i. */
/* Create every other thread (raw clone as glibc's pthread_create, CLONE_SETTLS,
 * the new tid written into glibc's control block); each sets its robust list,
 * rseq, GS base and pending signals, then waits at the barrier in the
 * trampoline's code at waiter.  Returns when all wait. */
void threads_create(const struct image *img, struct barrier *b, const uint64_t *frames,
                    uint64_t waiter);
/* The main thread's own pending signals and the process's, queued again. */
void threads_queue_main_signals(const struct image *img);
/* The new id of the thread captured as old (the main one: the pid). */
long threads_new_tid(const struct image *img, uint32_t old);
/* Let every thread resume and wait until all have left the restorer's pages. */
void threads_release(const struct image *img, struct barrier *b);
/* ------------------------------------------------------------ restore_timers.c */

/* Every POSIX timer made again with its id (PR_TIMER_CREATE_RESTORE_IDS) and
 * armed with its remaining time; after the threads exist (a timer may signal one). */
void timers_restore(const struct image *img);

/* The waiter's code, copied into the trampoline (position-independent). */
extern const char mosix_thread_waiter[], mosix_thread_waiter_end[];

/* ------------------------------------------------------------ restore_vdso.c */

/* -F without -t: the vDSO's clock functions become calls the forward filter
 * sends home (vdso_time.h).  prepare before the point of no return, patch
 * after the vDSO moved. */
void vdso_clocks_prepare(const struct image *img, const struct specials *cur);
void vdso_clocks_patch(const struct image *img);

#endif
