/* mosrun-wrapper.c - an example of the administrator's wrapper of mosrun(1)
 * ("FOR THE SYSTEM ADMINISTRATOR"): it receives mosrun's parameters, checks
 * and modifies them per the site's policy, then executes "mosrun -g PARAMS".
 *
 * This example's policy enforces queuing: a command line without -q or -Q
 * among its options gets -q (the queue's default priority).
 *
 * Build and install (group "mos" as in the manual):
 *   cc -O2 -Wall -DMOSRUN='"/usr/local/bin/mosrun"' -o /usr/local/bin/mosrun-site mosrun-wrapper.c
 *   chgrp mos /usr/local/bin/mosrun-site && chmod 2755 /usr/local/bin/mosrun-site
 *
 * mosrun -g drops the wrapper's group before it does anything else, so
 * neither mosrun nor the program (also with -R, -S, -E/-M, -q) keeps it.
 * Not built yet: what makes the wrapper the only way in (the manual's
 * "chmod 4750 /bin/mosrun" for a Python mosrun): see docs/INTERNALS.md. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifndef MOSRUN
#define MOSRUN "/usr/local/bin/mosrun"
#endif

static int queued(char **argv)
{
    for (int i = 1; argv[i] != NULL && argv[i][0] == '-'; i++) {
        if (strcmp(argv[i], "--") == 0)
            break;
        if (argv[i][1] == 'q' || argv[i][1] == 'Q')
            return 1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    (void)argc;
    int extra = queued(argv) ? 0 : 1;
    size_t n = 0;
    while (argv[n] != NULL)
        n++;
    char **args = calloc(n + 3, sizeof(*args));
    if (args == NULL) {
        fprintf(stderr, "mosrun-site: out of memory\n");
        return 125;
    }
    size_t k = 0;
    args[k++] = "mosrun";
    args[k++] = "-g";
    if (extra)
        args[k++] = "-q";
    for (size_t i = 1; i < n; i++)
        args[k++] = argv[i];
    args[k] = NULL;
    execv(MOSRUN, args);
    fprintf(stderr, "mosrun-site: %s: cannot run it\n", MOSRUN);
    return 126;
}
