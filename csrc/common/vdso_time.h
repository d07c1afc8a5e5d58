/* vdso_time.h - the clock functions of the vDSO, and sending them home.
 *
 * glibc reads the clocks through the vDSO (clock_gettime, gettimeofday, time,
 * clock_getres): no system call, so the forward filter of a migrated copy
 * never sees them and the copy would read its remote node's clock.  The
 * manual says the time is home's unless -t.  So the restorer of a copy (-F,
 * without -t) overwrites the first bytes of each such function with
 *
 *     mov eax, NR ; syscall ; ret            (b8 NR:le32 0f 05 c3)
 *
 * the system call of the same name and arguments (rdi, rsi: the function's
 * own), which the forward filter hands to the supervisor like any clock call
 * (TIME in mosix/discipline/forwarding.py: home's clocks unless -t, the
 * CPU-time clocks local).  __vdso_getcpu and __vdso_getrandom stay local.
 *
 * An image always describes the process as if its vDSO were not patched: the
 * capturer records the hash of the unpatched bytes (vdso_unpatch) and moves a
 * program counter inside a patched entry back to the function's start (the
 * call is made again: reading a clock twice is harmless; rdi and rsi survive
 * the syscall).  A process stopped inside the unpatched vDSO's code is stepped
 * until it returns from it: that code reads this node's clock data ([vvar]),
 * which is not the next node's (here, another time namespace: a clock read
 * finished there returned that node's time), and its first bytes may become
 * the patch.
 *
 * No libc and no system calls here: the restorer uses it too. */
#ifndef MOSIX_VDSO_TIME_H
#define MOSIX_VDSO_TIME_H

#include <stddef.h>
#include <stdint.h>

#define VDSO_PATCH_LEN 8
#define VDSO_TIME_MAX 4 /* distinct entry points: gettimeofday, time, clock_gettime, clock_getres */

struct vdso_entry {
    uint64_t offset; /* from the start of the [vdso] mapping */
    uint32_t nr;     /* the system call it becomes */
};

/* The clock functions of a [vdso] image of len bytes (aliases counted once),
 * in out[VDSO_TIME_MAX]: their number, or -1 when the image is not an ELF
 * shared object this understands or a function is too short to patch. */
int vdso_time_entries(const unsigned char *vdso, size_t len, struct vdso_entry *out);

/* The patch for system call nr (VDSO_PATCH_LEN bytes). */
void vdso_patch_bytes(uint32_t nr, unsigned char out[VDSO_PATCH_LEN]);

/* Whether the entry holds the patch. */
int vdso_is_patched(const unsigned char *vdso, const struct vdso_entry *e);

/* Put back the original bytes of every patched entry of proc (len bytes),
 * taken from orig (an unpatched vDSO of the same kernel, same length).  The
 * number of entries put back. */
int vdso_unpatch(unsigned char *proc, const unsigned char *orig, size_t len,
                 const struct vdso_entry *e, int n);

#endif
