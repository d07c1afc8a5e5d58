/* deputy_resume.h - the files of a process resumed at home from a checkpoint
 * (deputy_resume.c). */
#ifndef MOSIX_DEPUTY_RESUME_H
#define MOSIX_DEPUTY_RESUME_H

#include <stddef.h>

/* The regular files the checkpoint on descriptor image names, still open at
 * their descriptors, back to the checkpoint's offsets (and, appended to, its
 * sizes).  0, or -1 with the reason in why. */
int deputy_rewind_files(int image, char *why, size_t cap);

#endif
