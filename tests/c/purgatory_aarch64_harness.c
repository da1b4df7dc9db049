/*
 * Test harness for the aarch64 purgatory object, run under qemu-aarch64 (EL0).
 * No libc: it is linked with purgatory-aarch64.o exactly as shipped.
 *
 *   harness sha    stdin: repeated {u32 len, bytes}; prints one hex digest per message,
 *                  feeding sha256_update in irregular chunks
 *   harness main   stdin: the 32-byte SHA-256 of regions A||B (computed by Python);
 *                  runs purgatory_main() intact, corrupted, and with a backup copy
 *   harness enter  jumps through purgatory_enter_kernel into report_regs()
 */
#include "purgatory_harness.h"

extern uint64_t purgatory_entry_regs[5];
extern void purgatory_enter_kernel(void);

static long sys3(long n, long a, long b, long c)
{
	register long x8 __asm__("x8") = n;
	register long x0 __asm__("x0") = a;
	register long x1 __asm__("x1") = b;
	register long x2 __asm__("x2") = c;
	__asm__ volatile("svc #0" : "+r"(x0) : "r"(x8), "r"(x1), "r"(x2) : "memory");
	return x0;
}

static long sys6(long n, long a, long b, long c, long d, long e, long f)
{
	register long x8 __asm__("x8") = n;
	register long x0 __asm__("x0") = a;
	register long x1 __asm__("x1") = b;
	register long x2 __asm__("x2") = c;
	register long x3 __asm__("x3") = d;
	register long x4 __asm__("x4") = e;
	register long x5 __asm__("x5") = f;
	__asm__ volatile("svc #0" : "+r"(x0) : "r"(x8), "r"(x1), "r"(x2), "r"(x3), "r"(x4), "r"(x5) : "memory");
	return x0;
}

void report_regs(uint64_t x0, uint64_t x1, uint64_t x2, uint64_t x3);
void report_regs(uint64_t x0, uint64_t x1, uint64_t x2, uint64_t x3)
{
	outs("x0="); outhex(x0, 16);
	outs(" x1="); outhex(x1, 0);
	outs(" x2="); outhex(x2, 0);
	outs(" x3="); outhex(x3, 0);
	outs("\n");
	quit(0);
}

static void mode_enter(void)
{
	purgatory_entry_regs[0] = 0xfedcba98;
	purgatory_entry_regs[1] = 0;
	purgatory_entry_regs[2] = 0;
	purgatory_entry_regs[3] = 0;
	purgatory_entry_regs[4] = (uint64_t)(uintptr_t)report_regs;
	purgatory_enter_kernel();
	quit(5);
}

__asm__(".globl _start\n_start:\n\tmov x0, sp\n\tbl cmain\n\tb .\n");
