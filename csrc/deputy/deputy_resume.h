/* deputy_resume.h - the files of a process resumed at home from a checkpoint
 * (deputy_resume.c). */
#ifndef MOSIX_DEPUTY_RESUME_H
#define MOSIX_DEPUTY_RESUME_H

#include <stddef.h>
#include <stdint.h>

/* The regular files the checkpoint on descriptor image names, still open at
 * their descriptors, back to the checkpoint's offsets (and, appended to, its
 * sizes).  0, or -1 with the reason in why. */
int deputy_rewind_files(int image, char *why, size_t cap);

/* After the deputy executed the program's call nr (args) with result ret: a
 * write that extended a regular file is noted (the file's size just after it),
 * so that a later rewind cuts an appended file back only while the program's
 * own write is still its last extension, never another writer's data. */
void deputy_note_write(long nr, const uint64_t args[6], int64_t ret);

#endif
