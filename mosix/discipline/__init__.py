"""The MOSIX discipline in-process: syscall policy, seccomp filter, preload shim."""
