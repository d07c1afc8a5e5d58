/* locker.c - a process that cannot migrate: it pins a page of its memory in
 * this node's RAM (mmap MAP_LOCKED), says "locked" on stdout, and waits for
 * the end of stdin; then it checks the page and exits 0 (1: mmap failed,
 * 2: the page changed). */
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

int main(void)
{
    char *page = mmap(NULL, 4096, PROT_READ | PROT_WRITE,
                      MAP_PRIVATE | MAP_ANONYMOUS | MAP_LOCKED, -1, 0);
    if (page == MAP_FAILED) {
        perror("mmap");
        return 1;
    }
    memset(page, 'x', 4096);
    printf("locked\n");
    fflush(stdout);
    char buf[256];
    while (read(STDIN_FILENO, buf, sizeof(buf)) > 0)
        ;
    for (int i = 0; i < 4096; i++)
        if (page[i] != 'x')
            return 2;
    return 0;
}
