/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * kdump-load.plan: what the build knew, written by builder/kexec/plan/ as
 * "key value..." lines. The loader only completes it with live values.
 */
#ifndef KL_PLAN_H
#define KL_PLAN_H

#include "lib.h"

#define KL_MAX_REGS 40
#define KL_MAX_FIXUPS 256

struct kl_file_record {
	const char *name;
	u64 size;
	const char *sha256; /* 64 hex digits */
};

struct kl_plan {
	const char *path;
	const char *arch;
	u64 elf_machine, kexec_flags;
	struct kl_file_record kernel, initrd, cmdline;
	int text_above_linear_map;
	u64 text_window[2];
	int backup;
	/* bzImage (x86_64) */
	u64 payload_offset, kernel_memsz, kernel_align, kernel_min, above_4g, initrd_limit,
		cmdline_max, setup_start, setup_end;
	/* Image + device tree (aarch64, riscv64) */
	int image_as_file, image_anywhere, dump_minus_reserved;
	u64 image_memsz, image_text_offset, image_base_align, initrd_offset, initrd_align,
		window_align, window_size, bootargs_max, dtb_max;
	const char *dtb_register;
	/* purgatory, relocated for address 0 */
	u8 *purgatory;
	u64 purgatory_size, purgatory_memsz, purgatory_align, purgatory_entry;
	u64 digest_off, regions_off, regs_off, backup_off, stack_top;
	int nregs;
	const char *regs[KL_MAX_REGS];
	int nfixups;
	u64 fixup[KL_MAX_FIXUPS];
	/* digest-prefix: the purgatory digest's SHA-256 state after the kernel and initrd
	 * segments with these sizes (builder/kexec/plan/digest_prefix.py); 0 sizes: none */
	u64 prefix_kernel_bufsz, prefix_kernel_memsz, prefix_initrd_bufsz, prefix_initrd_memsz;
	u32 prefix_state[8];
};

void kl_read_plan(const char *path, struct kl_plan *plan);

#endif
