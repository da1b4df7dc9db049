/* SPDX-License-Identifier: GPL-2.0-only */
/* The syscall numbers of the generic table (include/uapi/asm-generic/unistd.h),
 * which aarch64 and riscv64 share. */
#define SYS_read 63
#define SYS_write 64
#define SYS_openat 56
#define SYS_close 57
#define SYS_pread64 67
#define SYS_fstat 80
#define SYS_exit_group 94
#define SYS_kexec_load 104
#define SYS_geteuid 175
#define SYS_mmap 222
#define SYS_getrandom 278
