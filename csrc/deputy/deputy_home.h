/* deputy_home.h - the image of a process coming home, checked before it is
 * used (deputy_home.c). */
#ifndef MOSIX_DEPUTY_HOME_H
#define MOSIX_DEPUTY_HOME_H

#include <stddef.h>

/* Read the image from descriptor from (through its END record) into a memory
 * file; its descriptor (close-on-exec, at offset 0), or -1 with why. */
int deputy_take_image(int from, char *why, size_t cap);

/* The restorer's check of the image on descriptor image (mosix-restore -c, in
 * a child); 0 when it accepts it, else -1 with its reason in why.  The image
 * is at offset 0 again afterwards. */
int deputy_check_image(const char *restorer, int image, char *why, size_t cap);

#endif
