/*
 * Test harness for the riscv64 purgatory object, run under qemu-riscv64 (user mode).
 * No libc: it is linked with purgatory-riscv64.o exactly as shipped.
 *
 *   harness sha    stdin: repeated {u32 len, bytes}; prints one hex digest per message,
 *                  feeding sha256_update in irregular chunks
 *   harness main   stdin: the 32-byte SHA-256 of regions A||B (computed by Python);
 *                  runs purgatory_main() intact, corrupted, and with a backup copy
 *   harness enter  calls purgatory_enter_kernel(hartid), which jumps into report_regs()
 */
#include "purgatory_harness.h"

extern uint64_t purgatory_entry_regs[2];
extern void purgatory_enter_kernel(uint64_t hartid);

static long sys3(long n, long a, long b, long c)
{
	register long a7 __asm__("a7") = n;
	register long a0 __asm__("a0") = a;
	register long a1 __asm__("a1") = b;
	register long a2 __asm__("a2") = c;
	__asm__ volatile("ecall" : "+r"(a0) : "r"(a7), "r"(a1), "r"(a2) : "memory");
	return a0;
}

static long sys6(long n, long a, long b, long c, long d, long e, long f)
{
	register long a7 __asm__("a7") = n;
	register long a0 __asm__("a0") = a;
	register long a1 __asm__("a1") = b;
	register long a2 __asm__("a2") = c;
	register long a3 __asm__("a3") = d;
	register long a4 __asm__("a4") = e;
	register long a5 __asm__("a5") = f;
	__asm__ volatile("ecall" : "+r"(a0) : "r"(a7), "r"(a1), "r"(a2), "r"(a3), "r"(a4), "r"(a5) : "memory");
	return a0;
}

void report_regs(uint64_t a0, uint64_t a1);
void report_regs(uint64_t a0, uint64_t a1)
{
	outs("a0="); outhex(a0, 0);
	outs(" a1="); outhex(a1, 16);
	outs("\n");
	quit(0);
}

static void mode_enter(void)
{
	purgatory_entry_regs[0] = 0x1feedbeef8;
	purgatory_entry_regs[1] = (uint64_t)(uintptr_t)report_regs;
	purgatory_enter_kernel(3);	/* the hart id, which the purgatory keeps in a0 */
	quit(5);
}

__asm__(".globl _start\n_start:\n\tmv a0, sp\n\tcall cmain\n\tj .\n");
