/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The capture kernel's device tree: the booted one with /chosen edited for a
 * crash boot, written canonically (builder/kexec/layout/devicetree.py and
 * builder/binfmt/fdt.py hold the same rules: NOPs dropped, property names
 * deduplicated in first-use order, no padding).
 */
#ifndef KL_FDT_H
#define KL_FDT_H

#include "lib.h"
#include "memmap.h"

#define KL_CHOSEN_EDITS 9

struct kl_chosen_edit {
	const char *name;
	const u8 *value; /* 0: the property is removed */
	u64 len;
};

struct kl_fdt_info {
	u64 address_cells, size_cells;
	int have_initrd;
	u64 initrd_start, initrd_end; /* the booted /chosen's (its old initrd) */
};

/* Root cells and the booted initrd; refuses what is not a v17 device tree. */
void kl_fdt_info(const struct kl_buf *dtb, struct kl_fdt_info *info);
/* The edited blob; `edits` in the order a new property is appended. */
u8 *kl_fdt_capture(const struct kl_buf *dtb, const struct kl_fdt_info *info,
		   const struct kl_chosen_edit *edits, int count, u64 *size);
/* The firmware's /memreserve/ entries and /reserved-memory children without
 * `reusable`, sorted (riscv64 leaves them out of the dump). */
void kl_fdt_firmware_reserved(const struct kl_buf *dtb, const struct kl_fdt_info *info,
			      struct kl_ranges *out);
/* <address size> pairs in the root's cells; fails when one does not fit. */
u8 *kl_fdt_ranges(const struct kl_fdt_info *info, const struct kl_range *ranges, int count,
		  u64 *len);

#endif
