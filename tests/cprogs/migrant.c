/* migrant.c - a program for migration tests: reads a line from stdin, computes,
 * writes a file (its first argument, relative to its cwd), prints its pid and
 * the sum to stdout, and exits with the status given as its second argument. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    if (argc != 3)
        return 2;
    char line[256];
    if (!fgets(line, sizeof(line), stdin))
        return 3;
    line[strcspn(line, "\n")] = '\0';
    volatile unsigned long sum = 0;
    for (unsigned long i = 0; i < 200000000UL; i++)
        sum += i;
    FILE *f = fopen(argv[1], "w");
    if (!f)
        return 4;
    fprintf(f, "%s %lu\n", line, (unsigned long)sum);
    if (fclose(f) != 0)
        return 4;
    printf("got %s pid %d sum %lu\n", line, (int)getpid(), (unsigned long)sum);
    return atoi(argv[2]);
}
