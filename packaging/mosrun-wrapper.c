/* mosrun-wrapper.c - an example of the administrator's wrapper of mosrun(1)
 * ("FOR THE SYSTEM ADMINISTRATOR"): it receives mosrun's parameters, checks
 * and modifies them per the site's policy, then executes "mosrun -g PARAMS".
 *
 * This example's policy enforces queuing: a command line without -q or -Q
 * among its options gets -q (the queue's default priority).
 *
 * Build and install (group "mos" as in the manual; PYTHON is the interpreter
 * of the installation whose MOSRUN script it runs):
 *   cc -O2 -Wall -DPYTHON='"/opt/mosix/bin/python"' -DMOSRUN='"/opt/mosix/bin/mosrun"' \
 *      -o /usr/local/bin/mosrun-site mosrun-wrapper.c
 *   chgrp mos /usr/local/bin/mosrun-site && chmod 2755 /usr/local/bin/mosrun-site
 * and in every node's mosixd.toml:  [site] mosrun_group = "mos"
 * With that key the node agent starts MOSIX work (mosrun, -q, -E/-M) only for
 * a caller whose effective group is "mos" (or root): through this wrapper.
 *
 * mosrun is a Python script: this wrapper runs it as "PYTHON -I MOSRUN", never
 * through its "#!" line, because a Python process holding the group must not
 * be steered by the caller's environment: -I ignores PYTHONPATH, PYTHONHOME,
 * PYTHONSTARTUP, the user's site-packages and the current directory, and the
 * two variables that steer even "python -I" (PYTHONEXECUTABLE and
 * __PYVENV_LAUNCHER__: another installation's modules) are removed here.
 * mosrun keeps the group only for its requests to the node agent; neither a
 * queued mosrun while it waits nor the program (also with -R, -S, -E/-M)
 * keeps it.  See docs/INTERNALS.md, "The administrator's wrapper". */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifndef PYTHON
#define PYTHON "/usr/bin/python3"
#endif
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
    if (unsetenv("PYTHONEXECUTABLE") != 0 || unsetenv("__PYVENV_LAUNCHER__") != 0) {
        fprintf(stderr, "mosrun-site: cannot clean the environment\n");
        return 125;
    }
    int extra = queued(argv) ? 0 : 1;
    size_t n = 0;
    while (argv[n] != NULL)
        n++;
    char **args = calloc(n + 5, sizeof(*args));
    if (args == NULL) {
        fprintf(stderr, "mosrun-site: out of memory\n");
        return 125;
    }
    size_t k = 0;
    args[k++] = PYTHON;
    args[k++] = "-I";
    args[k++] = MOSRUN;
    args[k++] = "-g";
    if (extra)
        args[k++] = "-q";
    for (size_t i = 1; i < n; i++)
        args[k++] = argv[i];
    args[k] = NULL;
    execv(PYTHON, args);
    fprintf(stderr, "mosrun-site: %s: cannot run it\n", PYTHON);
    return 126;
}
