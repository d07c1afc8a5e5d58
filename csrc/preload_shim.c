/* preload_shim.c - the part of mosix that lives inside the user's process.
 *
 * Loaded with LD_PRELOAD into every dynamically linked program that runs
 * under the MOSIX discipline.  (Filled in by the discipline issue: SIGSYS
 * handler, protection of that handler, mmap fix-up.)
 */
#include "mosix_shim.h"

__attribute__((visibility("default"))) int mosix_shim_loaded = 1;
