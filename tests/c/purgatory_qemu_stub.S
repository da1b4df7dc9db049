/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * A bare-metal stand-in for both ends of the purgatory, booted by QEMU as a
 * multiboot image (tests/unit/kexec/test_purgatory.py builds it with gcc).
 *
 * Before: play the crashed kernel's relocate_kernel. Enter long mode with
 * identity-mapped page tables (first 1 GiB, 2 MiB pages), then leave the CPU
 * as machine_kexec does: GDTR and IDTR limit 0, RFLAGS 0, CR4 = PAE only (so
 * SSE faults), all general registers 0, a stack elsewhere, and jump to
 * PURGATORY_ENTRY (a -D define).
 *
 * After: play the capture kernel's 64-bit entry (`fake_kernel`, the rip the
 * test patches in). Record every general register, the segment selectors,
 * GDTR and RFLAGS, print them in hex on the debug console (port 0xe9) and
 * halt at `fake_kernel_done`, where the test inspects memory.
 */

#define MULTIBOOT_MAGIC 0x1BADB002
#define CODE64_SEL 0x10                 /* the crashed kernel's __KERNEL_CS */
#define DATA_SEL 0x18                   /* and __KERNEL_DS */
#define DEBUGCON_PORT 0xe9
#define SAVED_QUADS 23

	.section .text
	.code32
	.balign 4
multiboot_header:
	.long	MULTIBOOT_MAGIC
	.long	0
	.long	-MULTIBOOT_MAGIC

	.globl _start
_start:
	cli
	movl	$stack_top, %esp
	movl	$pml4, %eax
	movl	%eax, %cr3
	movl	$0x20, %eax                     /* CR4.PAE */
	movl	%eax, %cr4
	movl	$0xC0000080, %ecx               /* EFER.LME */
	rdmsr
	orl	$0x100, %eax
	wrmsr
	movl	%cr0, %eax
	orl	$0x80000001, %eax               /* PG | PE */
	movl	%eax, %cr0
	lgdt	gdt_pointer
	ljmp	$CODE64_SEL, $long_mode

	.code64
long_mode:
	movl	$DATA_SEL, %eax
	movl	%eax, %ds
	movl	%eax, %es
	movl	%eax, %ss
	/* Now as relocate_kernel leaves it. */
	lgdt	zero_descriptor
	lidt	zero_descriptor
	movl	$stack_top, %esp
	pushq	$0
	popfq
	movq	$PURGATORY_ENTRY, %rax
	pushq	%rax
	xorl	%eax, %eax
	xorl	%ebx, %ebx
	xorl	%ecx, %ecx
	xorl	%edx, %edx
	xorl	%esi, %esi
	xorl	%edi, %edi
	xorl	%ebp, %ebp
	xorl	%r8d, %r8d
	xorl	%r9d, %r9d
	xorl	%r10d, %r10d
	xorl	%r11d, %r11d
	xorl	%r12d, %r12d
	xorl	%r13d, %r13d
	xorl	%r14d, %r14d
	xorl	%r15d, %r15d
	ret

	.globl fake_kernel
fake_kernel:
	/* Save before anything clobbers: absolute addresses, no stack. */
	movq	%rax, saved + 0
	movq	%rbx, saved + 8
	movq	%rcx, saved + 16
	movq	%rdx, saved + 24
	movq	%rsi, saved + 32
	movq	%rdi, saved + 40
	movq	%rsp, saved + 48
	movq	%rbp, saved + 56
	movq	%r8, saved + 64
	movq	%r9, saved + 72
	movq	%r10, saved + 80
	movq	%r11, saved + 88
	movq	%r12, saved + 96
	movq	%r13, saved + 104
	movq	%r14, saved + 112
	movq	%r15, saved + 120
	movq	$0, %rax
	movw	%cs, %ax
	movq	%rax, saved + 128
	movw	%ds, %ax
	movq	%rax, saved + 136
	movw	%es, %ax
	movq	%rax, saved + 144
	movw	%ss, %ax
	movq	%rax, saved + 152
	sgdt	gdtr_image
	movzwq	gdtr_image, %rax
	movq	%rax, saved + 160
	movq	gdtr_image + 2, %rax
	movq	%rax, saved + 168
	movl	$stack_top, %esp
	pushfq
	popq	saved + 176

	/* Print each saved quad as 16 hex digits and a newline. */
	movl	$saved, %esi
	movl	$SAVED_QUADS, %ecx
	movw	$DEBUGCON_PORT, %dx
.Lnext_quad:
	movq	(%rsi), %rbx
	movl	$16, %edi
.Lnext_digit:
	rolq	$4, %rbx
	movl	%ebx, %eax
	andl	$0xf, %eax
	movb	hex_digits(%eax), %al
	outb	%al, %dx
	decl	%edi
	jnz	.Lnext_digit
	movb	$'\n', %al
	outb	%al, %dx
	addl	$8, %esi
	decl	%ecx
	jnz	.Lnext_quad

	.globl fake_kernel_done
fake_kernel_done:
	hlt
	jmp	fake_kernel_done

	.section .rodata
hex_digits:
	.ascii	"0123456789abcdef"

	.balign 8
gdt:
	.quad	0
	.quad	0
	.quad	0x00af9a000000ffff              /* CODE64_SEL */
	.quad	0x00cf92000000ffff              /* DATA_SEL */
gdt_end:
gdt_pointer:
	.word	gdt_end - gdt - 1
	.long	gdt
zero_descriptor:
	.word	0
	.quad	0

	.section .data
	.balign 4096
pml4:
	.long	pdpt + 3
	.long	0
	.fill	511, 8, 0
pdpt:
	.long	page_directory + 3
	.long	0
	.fill	511, 8, 0
page_directory:                         /* 512 x 2 MiB, present, writable, large */
	.set	page, 0
	.rept	512
	.quad	(page << 21) | 0x83
	.set	page, page + 1
	.endr
saved:
	.fill	SAVED_QUADS, 8, 0
gdtr_image:
	.fill	2, 8, 0

	.section .bss
	.balign 16
	.skip	4096
stack_top:

	.section .note.GNU-stack, "", @progbits
