/* gidshow.c - says which groups it runs as, before and after a line on stdin.
 *
 * Usage: gidshow
 * Prints its "Gid:" line of /proc/self/status (real, effective, saved, file
 * system), waits for a line on stdin (a checkpoint can be taken there), and
 * prints the line again (after a recovery: the recovered process's). */
#include <stdio.h>
#include <string.h>

static int show(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    if (f == NULL)
        return 1;
    char line[256];
    int found = 0;
    while (fgets(line, sizeof(line), f) != NULL)
        if (strncmp(line, "Gid:", 4) == 0) {
            fputs(line, stdout);
            found = 1;
        }
    fclose(f);
    fflush(stdout);
    return found ? 0 : 1;
}

int main(void)
{
    char line[64];
    if (show() != 0)
        return 2;
    if (fgets(line, sizeof(line), stdin) == NULL)
        return 3;
    return show() != 0 ? 2 : 0;
}
