/* seccomp_filter.c - the MOSIX discipline as a seccomp-bpf program.
 * (Filled in by the discipline issue.) */
#include "mosix_shim.h"
