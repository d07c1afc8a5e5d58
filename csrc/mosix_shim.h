/* mosix_shim.h - declarations shared by the C parts of mosix. */
#ifndef MOSIX_SHIM_H
#define MOSIX_SHIM_H

extern int mosix_shim_loaded;

#endif
