/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Host-side catcher for the purgatory's register hand-off. run_jump(target)
 * saves the caller's state and jumps to target (purgatory_enter_kernel);
 * the purgatory loads its patched registers and jumps to `capture`, which
 * records all sixteen general registers (in purgatory_entry_regs order)
 * before touching the stack, then restores the caller's state and returns.
 */
	.text
	.globl run_jump
	.type run_jump, @function
run_jump:
	pushq	%rbx
	pushq	%rbp
	pushq	%r12
	pushq	%r13
	pushq	%r14
	pushq	%r15
	movq	%rsp, .Lsaved_rsp(%rip)
	jmpq	*%rdi
	.size run_jump, . - run_jump

	.globl capture
	.type capture, @function
capture:
	movq	%rax, .Lcaptured + 0(%rip)
	movq	%rbx, .Lcaptured + 8(%rip)
	movq	%rcx, .Lcaptured + 16(%rip)
	movq	%rdx, .Lcaptured + 24(%rip)
	movq	%rsi, .Lcaptured + 32(%rip)
	movq	%rdi, .Lcaptured + 40(%rip)
	movq	%rsp, .Lcaptured + 48(%rip)
	movq	%rbp, .Lcaptured + 56(%rip)
	movq	%r8, .Lcaptured + 64(%rip)
	movq	%r9, .Lcaptured + 72(%rip)
	movq	%r10, .Lcaptured + 80(%rip)
	movq	%r11, .Lcaptured + 88(%rip)
	movq	%r12, .Lcaptured + 96(%rip)
	movq	%r13, .Lcaptured + 104(%rip)
	movq	%r14, .Lcaptured + 112(%rip)
	movq	%r15, .Lcaptured + 120(%rip)
	movq	.Lsaved_rsp(%rip), %rsp
	popq	%r15
	popq	%r14
	popq	%r13
	popq	%r12
	popq	%rbp
	popq	%rbx
	ret
	.size capture, . - capture

	.data
	.balign 8
	.globl captured
	.type captured, @object
captured:
.Lcaptured:
	.fill	16, 8, 0
	.size captured, . - captured
.Lsaved_rsp:
	.quad	0

	.section .note.GNU-stack, "", @progbits
