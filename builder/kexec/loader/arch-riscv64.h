/* SPDX-License-Identifier: GPL-2.0-only */
/* riscv64: the generic syscall table (include/uapi/asm-generic/unistd.h), ecall. */
#define KL_ARCH_NAME "riscv64"
#define KL_ELF_MACHINE 243
#include "syscalls-generic.h"

static inline long kl_syscall6(long n, long a, long b, long c, long d, long e, long f)
{
	register long a7 __asm__("a7") = n;
	register long a0 __asm__("a0") = a;
	register long a1 __asm__("a1") = b;
	register long a2 __asm__("a2") = c;
	register long a3 __asm__("a3") = d;
	register long a4 __asm__("a4") = e;
	register long a5 __asm__("a5") = f;
	__asm__ volatile("ecall"
			 : "+r"(a0)
			 : "r"(a7), "r"(a1), "r"(a2), "r"(a3), "r"(a4), "r"(a5)
			 : "memory");
	return a0;
}

/* gp is left alone: we link with no small-data section that needs it. */
#define KL_START_ASM                                                                       \
	__asm__(".text\n.global _start\n_start:\n"                                         \
		"li fp, 0\nli ra, 0\nmv a0, sp\nandi sp, sp, -16\ncall kl_start_c\n1: j 1b\n")
