/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * riscv64 purgatory entry.
 *
 * For a crash image loaded with kexec_load, Linux 6.12 reaches this code from
 * machine_kexec() -> riscv_kexec_norelocate (arch/riscv/kernel/machine_kexec.c,
 * kexec_relocate.S; the segments are already in place): it clears sie and sip,
 * sets a0 = the crashing hart's id, a1 = the physical address of the first
 * segment whose first 40 bytes pass fdt_check_header, a2 = this entry, zeroes
 * a3-a7, s0-s11 and t0-t6, writes stvec = this entry and satp = 0. The next
 * fetch, still at a kernel virtual address, faults and traps here in S-mode
 * with the MMU off. sp, gp, tp and ra still hold the dead kernel's virtual
 * addresses (measured in QEMU virt): meaningless now, so we take our own stack
 * and use nothing gp- or tp-relative (-mno-relax, -msmall-data-limit=0).
 * sstatus.FS and VS are off: built for rv64imac, no F/D/V instruction exists
 * here. stvec in direct mode needs this entry 4-byte aligned.
 *
 * So: park on any trap from now on (stvec = purgatory_halt), verify the
 * segments in C, then enter the capture kernel as
 * Documentation/arch/riscv/boot.rst asks: a0 = hartid, a1 = DTB physical
 * address, MMU off, interrupts off.
 *
 * Only PC-relative addressing (lla, call, branches), no relaxation: the
 * object needs R_RISCV_BRANCH, CALL_PLT, PCREL_HI20, PCREL_LO12_I,
 * RVC_BRANCH and RVC_JUMP (riscv64.py knows exactly these and a few more).
 */

#define STACK_SIZE 4096
#define SR_SIE 0x2

/* Offsets in purgatory_entry_regs; riscv64.py lists the same order. */
#define REG_A1 0
#define REG_ENTRY 8
#define ENTRY_REGS_SIZE 16

	.option norelax
	.text
	.balign 4
	.globl purgatory_start
	.type purgatory_start, @function
purgatory_start:
	csrw	sie, zero			/* cleared already; a halt below must stay a halt */
	csrci	sstatus, SR_SIE
	lla	t0, purgatory_halt		/* any trap from here on parks the hart */
	csrw	stvec, t0
	lla	sp, purgatory_stack + STACK_SIZE
	mv	s0, a0				/* the hart id: only the crashed kernel knows it */
	call	purgatory_main
	beqz	a0, purgatory_halt
	mv	a0, s0
	/* The crashed kernel wrote the segments through its own mapping long ago;
	 * make sure no stale instruction is fetched from them. */
	fence.i
	/* fall through */
	.size purgatory_start, . - purgatory_start

/*
 * Keep a0 (the hart id), load a1 and the kernel entry from the patched block
 * and jump. A separate global symbol, free of privileged instructions, so a
 * test can run it in user mode under qemu-riscv64 and see the registers arrive.
 */
	.globl purgatory_enter_kernel
	.type purgatory_enter_kernel, @function
purgatory_enter_kernel:
	lla	t0, purgatory_entry_regs
	ld	a1, REG_A1(t0)
	ld	t1, REG_ENTRY(t0)
	beqz	t1, purgatory_halt		/* never patched: do not jump to 0 */
	jr	t1
	.size purgatory_enter_kernel, . - purgatory_enter_kernel

/* A digest mismatch or any trap ends here for good. 4-byte aligned: a stvec target. */
	.balign 4
	.globl purgatory_halt
	.type purgatory_halt, @function
purgatory_halt:
	csrw	sie, zero
	csrci	sstatus, SR_SIE
1:	wfi
	j	1b				/* wfi may return spuriously: sleep again */
	.size purgatory_halt, . - purgatory_halt

	.data
	.balign 8
	.globl purgatory_entry_regs
	.type purgatory_entry_regs, @object
purgatory_entry_regs:
	.fill	ENTRY_REGS_SIZE, 1, 0
	.size purgatory_entry_regs, . - purgatory_entry_regs

	.bss
	.balign 16
	.globl purgatory_stack
	.type purgatory_stack, @object
purgatory_stack:
	.skip	STACK_SIZE
	.size purgatory_stack, . - purgatory_stack

	.section .note.GNU-stack, "", @progbits
