/* shim_mem.c - memcpy, memmove, memset and memchr of the preload shim itself.
 *
 * The shim's SIGSYS handler marshals forwarded calls (shim_forward.c and
 * forward_marshal.c) and may call no libc function: not async-signal-safe in
 * general, and a lazily bound one would enter the dynamic linker.  These are
 * hidden, so every call from the shim's own code binds here; the program and
 * its libraries keep libc's. */
#include <stddef.h>

#define HIDDEN __attribute__((visibility("hidden")))

HIDDEN void *memcpy(void *dst, const void *src, size_t n)
{
    void *d = dst;
    __asm__ volatile("rep movsb" : "+D"(d), "+S"(src), "+c"(n) : : "memory");
    return dst;
}

HIDDEN void *memmove(void *dst, const void *src, size_t n)
{
    unsigned char *d = dst;
    const unsigned char *s = src;
    if (d <= s || d >= s + n)
        return memcpy(dst, src, n);
    /* overlapping, destination above: backwards */
    d += n - 1;
    s += n - 1;
    __asm__ volatile("std\n\trep movsb\n\tcld" : "+D"(d), "+S"(s), "+c"(n) : : "memory");
    return dst;
}

HIDDEN void *memset(void *dst, int c, size_t n)
{
    void *d = dst;
    __asm__ volatile("rep stosb" : "+D"(d), "+c"(n) : "a"(c) : "memory");
    return dst;
}

__attribute__((optimize("no-tree-loop-distribute-patterns"))) HIDDEN void *memchr(const void *s, int c,
                                                                             size_t n)
{
    const unsigned char *p = s;
    for (; n; n--, p++)
        if (*p == (unsigned char)c)
            return (void *)p;
    return NULL;
}
