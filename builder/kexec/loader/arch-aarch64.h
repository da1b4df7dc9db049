/* SPDX-License-Identifier: GPL-2.0-only */
/* aarch64: the generic syscall table (include/uapi/asm-generic/unistd.h), svc #0. */
#define KL_ARCH_NAME "aarch64"
#define KL_ELF_MACHINE 183
#include "syscalls-generic.h"

static inline long kl_syscall6(long n, long a, long b, long c, long d, long e, long f)
{
	register long x8 __asm__("x8") = n;
	register long x0 __asm__("x0") = a;
	register long x1 __asm__("x1") = b;
	register long x2 __asm__("x2") = c;
	register long x3 __asm__("x3") = d;
	register long x4 __asm__("x4") = e;
	register long x5 __asm__("x5") = f;
	__asm__ volatile("svc #0"
			 : "+r"(x0)
			 : "r"(x8), "r"(x1), "r"(x2), "r"(x3), "r"(x4), "r"(x5)
			 : "memory");
	return x0;
}

#define KL_START_ASM                                                                       \
	__asm__(".text\n.global _start\n_start:\n"                                         \
		"mov x29, #0\nmov x30, #0\nmov x0, sp\nand sp, x0, #-16\nbl kl_start_c\nb .\n")
