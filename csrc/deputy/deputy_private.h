/* deputy_private.h - a moved process's private files leave home (deputy_private.c). */
#ifndef MOSIX_DEPUTY_PRIVATE_H
#define MOSIX_DEPUTY_PRIVATE_H

/* Remove every file of the process's private directories (mosrun -X) here:
 * 0, or -1 if one could not be read or removed (it stays). */
int deputy_empty_private(void);

#endif
