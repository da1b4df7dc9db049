/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * x86_64 purgatory entry.
 *
 * The crashed kernel's relocate_kernel jumps here in 64-bit mode with
 * interrupts off, paging on through page tables that identity-map all RAM
 * and every segment, all general registers zero, and GDTR/IDTR loaded with
 * limit 0 (machine_kexec zaps them). So: load a GDT before touching any
 * segment register, take a stack of our own, verify the segments, and either
 * halt or enter the capture kernel by the 64-bit boot protocol
 * (Documentation/arch/x86/boot.rst): CS = 0x10, DS/ES/SS = 0x18, both flat,
 * %rsi = boot_params, interrupts off.
 *
 * Only RIP-relative addressing here, so this file needs just PC32/PLT32
 * relocations; the GDT pointer needs one R_X86_64_64.
 */

#define BOOT_CS 0x10
#define BOOT_DS 0x18
#define STACK_SIZE 4096

/* Offsets in purgatory_entry_regs; x86_64.py lists the same order. */
#define REG_RAX 0
#define REG_RBX 8
#define REG_RCX 16
#define REG_RDX 24
#define REG_RSI 32
#define REG_RDI 40
#define REG_RSP 48
#define REG_RBP 56
#define REG_R8 64
#define REG_R9 72
#define REG_R10 80
#define REG_R11 88
#define REG_R12 96
#define REG_R13 104
#define REG_R14 112
#define REG_R15 120
#define REG_RIP 128
#define ENTRY_REGS_SIZE 136

	.text
	.globl purgatory_start
	.type purgatory_start, @function
purgatory_start:
	cli                             /* already off; a halt below must stay a halt */
	cld                             /* the C code assumes the ABI's DF = 0 */
	lgdt	gdt_pointer(%rip)
	movl	$BOOT_DS, %eax
	movl	%eax, %ds
	movl	%eax, %es
	movl	%eax, %ss
	movl	%eax, %fs
	movl	%eax, %gs
	leaq	purgatory_stack + STACK_SIZE(%rip), %rsp

	/* CS still holds the old kernel's cached selector: reload it from our GDT. */
	pushq	$BOOT_CS
	leaq	.Lreloaded_cs(%rip), %rax
	pushq	%rax
	lretq
.Lreloaded_cs:
	call	purgatory_main
	testl	%eax, %eax
	jz	purgatory_halt
	/* fall through: the segments are intact */
	.size purgatory_start, . - purgatory_start

/*
 * Load every general register from the patched block and jump. A separate
 * global symbol so the host test can run it (it is unprivileged) and see the
 * registers arrive.
 */
	.globl purgatory_enter_kernel
	.type purgatory_enter_kernel, @function
purgatory_enter_kernel:
	movq	purgatory_entry_regs + REG_RAX(%rip), %rax
	movq	purgatory_entry_regs + REG_RBX(%rip), %rbx
	movq	purgatory_entry_regs + REG_RCX(%rip), %rcx
	movq	purgatory_entry_regs + REG_RDX(%rip), %rdx
	movq	purgatory_entry_regs + REG_RSI(%rip), %rsi
	movq	purgatory_entry_regs + REG_RDI(%rip), %rdi
	movq	purgatory_entry_regs + REG_RSP(%rip), %rsp
	movq	purgatory_entry_regs + REG_RBP(%rip), %rbp
	movq	purgatory_entry_regs + REG_R8(%rip), %r8
	movq	purgatory_entry_regs + REG_R9(%rip), %r9
	movq	purgatory_entry_regs + REG_R10(%rip), %r10
	movq	purgatory_entry_regs + REG_R11(%rip), %r11
	movq	purgatory_entry_regs + REG_R12(%rip), %r12
	movq	purgatory_entry_regs + REG_R13(%rip), %r13
	movq	purgatory_entry_regs + REG_R14(%rip), %r14
	movq	purgatory_entry_regs + REG_R15(%rip), %r15
	jmpq	*purgatory_entry_regs + REG_RIP(%rip)
	.size purgatory_enter_kernel, . - purgatory_enter_kernel

/* A digest mismatch ends here for good: never jump into corrupt memory. */
	.globl purgatory_halt
	.type purgatory_halt, @function
purgatory_halt:
	cli
1:	hlt
	jmp	1b                      /* an NMI wakes hlt: go back to sleep */
	.size purgatory_halt, . - purgatory_halt

	.data
	.balign 8
	.globl purgatory_entry_regs
	.type purgatory_entry_regs, @object
purgatory_entry_regs:
	.fill	ENTRY_REGS_SIZE, 1, 0
	.size purgatory_entry_regs, . - purgatory_entry_regs

	/* 0x00 null, 0x08 unused, 0x10 64-bit code, 0x18 flat data (boot.rst). */
	.balign 16
gdt:
	.quad	0
	.quad	0
	.quad	0x00af9a000000ffff      /* BOOT_CS: present, exec/read, L=1, 4 GiB */
	.quad	0x00cf92000000ffff      /* BOOT_DS: present, read/write, 4 GiB */
.Lgdt_end:

	.balign 8
	.word	0, 0, 0                 /* pad so the 8-byte base is aligned */
gdt_pointer:
	.word	.Lgdt_end - gdt - 1
	.quad	gdt                     /* absolute: the one R_X86_64_64 in this file */

	.bss
	.balign 16
	.globl purgatory_stack
	.type purgatory_stack, @object
purgatory_stack:
	.skip	STACK_SIZE
	.size purgatory_stack, . - purgatory_stack

	.section .note.GNU-stack, "", @progbits
