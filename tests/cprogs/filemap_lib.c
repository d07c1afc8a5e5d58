/* filemap_lib.c - the shared library filemap.c loads with dlopen. */
int filemap_answer(void);

int filemap_answer(void)
{
    return 42;
}
