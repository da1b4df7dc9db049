/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * arm64 purgatory entry.
 *
 * For a crash image loaded with kexec_load, Linux 6.1 reaches this code from
 * machine_kexec() -> cpu_soft_restart() (arch/arm64/kernel/machine_kexec.c,
 * cpu-reset.S; the segments are already in place, head == IND_DONE):
 * PSTATE.DAIF all masked, SCTLR_ELx.{M,C,I} = 0 (MMU,
 * data and instruction caches off, so every data access is Device-nGnRnE and
 * must be naturally aligned), at EL1, or at EL2 when the crashed kernel owned
 * EL2 (nVHE: through the HVC_SOFT_RESTART stub call; VHE: directly).
 * x0 = kimage->arch.dtb_mem, which only kexec_file_load sets: 0 here;
 * x1 = x2 = x3 = 0. SP still holds the dead kernel's virtual stack pointer
 * and VBAR_ELx its virtual vectors: neither is usable with the MMU off.
 *
 * So: take our own vectors (a fault parks the CPU instead of jumping into
 * unmapped memory) and our own stack, verify the segments in C, then enter
 * the capture kernel as Documentation/arm64/booting.rst asks:
 * x0 = DTB physical address, x1..x3 = 0, MMU off, interrupts masked.
 *
 * Only PC-relative addressing (adr, b, bl): built with -mcmodel=tiny the
 * whole object needs R_AARCH64_ADR_PREL_LO21, CALL26 and JUMP26 (aarch64.py
 * knows exactly these). Branches inside this file go to local labels, which
 * the assembler resolves. Measured in QEMU virt: x0..x3 are all 0 on entry
 * at EL1, at EL2 with VHE and at EL2 with nVHE KVM.
 */

#define STACK_SIZE 4096

/* Offsets in purgatory_entry_regs; aarch64.py lists the same order. */
#define REG_X0 0
#define REG_X1 8
#define REG_X2 16
#define REG_X3 24
#define REG_ENTRY 32
#define ENTRY_REGS_SIZE 40

#define CURRENTEL_EL2 (2 << 2)

	.text
	.globl purgatory_start
	.type purgatory_start, %function
purgatory_start:
	msr	daifset, #0xf			/* masked already; a halt must stay a halt */
	adr	x9, purgatory_vectors
	mrs	x10, CurrentEL
	cmp	x10, #CURRENTEL_EL2
	b.eq	1f
	msr	vbar_el1, x9
	b	2f
1:	msr	vbar_el2, x9
2:	isb
	adr	x9, purgatory_stack + STACK_SIZE
	mov	sp, x9
	bl	purgatory_main
	cbz	w0, .Lhalt
	/* The segments are intact. Nothing was ever fetched from the kernel
	 * image, but booting.rst wants no stale I-cache lines for it: drop
	 * them all (cheap, allowed at EL1 and EL2). */
	ic	iallu
	dsb	nsh
	isb
	/* fall through */
	.size purgatory_start, . - purgatory_start

/*
 * Load x0..x3 from the patched block and jump to the kernel entry. A
 * separate global symbol, free of privileged instructions, so a test can run
 * it at EL0 under qemu-aarch64 and see the registers arrive.
 */
	.globl purgatory_enter_kernel
	.type purgatory_enter_kernel, %function
purgatory_enter_kernel:
	adr	x9, purgatory_entry_regs
	ldp	x0, x1, [x9, #REG_X0]
	ldp	x2, x3, [x9, #REG_X2]
	ldr	x9, [x9, #REG_ENTRY]
	br	x9
	.size purgatory_enter_kernel, . - purgatory_enter_kernel

/* A digest mismatch or any exception ends here for good. */
	.globl purgatory_halt
	.type purgatory_halt, %function
purgatory_halt:
.Lhalt:
	msr	daifset, #0xf
1:	wfe
	b	1b				/* an event wakes wfe: sleep again */
	.size purgatory_halt, . - purgatory_halt

/*
 * Exception vectors: 16 slots of 128 bytes, 2 KiB aligned (VBAR_ELx bits
 * [10:0] are RES0). Every exception parks the CPU.
 */
	.balign 2048
	.type purgatory_vectors, %object
purgatory_vectors:
	.rept 16
	b	.Lhalt
	.balign 128
	.endr
	.size purgatory_vectors, . - purgatory_vectors

	.data
	.balign 8
	.globl purgatory_entry_regs
	.type purgatory_entry_regs, %object
purgatory_entry_regs:
	.fill	ENTRY_REGS_SIZE, 1, 0
	.size purgatory_entry_regs, . - purgatory_entry_regs

	.bss
	.balign 16
	.globl purgatory_stack
	.type purgatory_stack, %object
purgatory_stack:
	.skip	STACK_SIZE
	.size purgatory_stack, . - purgatory_stack

	.section .note.GNU-stack, "", %progbits
