/* SPDX-License-Identifier: GPL-2.0-only */
/* x86_64: syscall numbers (arch/x86/entry/syscalls/syscall_64.tbl), the
 * syscall instruction and the process entry. Included first by the build. */
#define KL_ARCH_NAME "x86_64"
#define KL_ELF_MACHINE 62
#define SYS_read 0
#define SYS_write 1
#define SYS_close 3
#define SYS_fstat 5
#define SYS_mmap 9
#define SYS_pread64 17
#define SYS_geteuid 107
#define SYS_exit_group 231
#define SYS_kexec_load 246
#define SYS_openat 257
#define SYS_getrandom 318

static inline long kl_syscall6(long n, long a, long b, long c, long d, long e, long f)
{
	register long r10 __asm__("r10") = d;
	register long r8 __asm__("r8") = e;
	register long r9 __asm__("r9") = f;
	long ret;
	__asm__ volatile("syscall"
			 : "=a"(ret)
			 : "a"(n), "D"(a), "S"(b), "d"(c), "r"(r10), "r"(r8), "r"(r9)
			 : "rcx", "r11", "memory");
	return ret;
}

/* The kernel starts us with rsp at argc; main wants it as a pointer, with the
 * stack 16-byte aligned at the call as the ABI says. */
#define KL_START_ASM                                                                       \
	__asm__(".text\n.global _start\n_start:\n"                                         \
		"xor %rbp, %rbp\nmov %rsp, %rdi\nand $-16, %rsp\ncall kl_start_c\nhlt\n")
