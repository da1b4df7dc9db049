/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * What every architecture's layout shares: the segments kexec_load takes, the
 * top-down placer inside the crash region, the ELF core header, and the
 * purgatory relocated and patched with the digest of every other segment.
 * The rules are builder/kexec/layout/ and builder/kexec/purgatory/'s; the
 * byte-identity test (tests/unit/kexec/test_kdump_load.py) holds both to them.
 */
#ifndef KL_LAYOUT_H
#define KL_LAYOUT_H

#include "crashinfo.h"
#include "memmap.h"
#include "plan.h"

#define KL_MAX_SEGMENTS 16

struct kl_segment {
	const char *name;
	const u8 *data;
	u64 bufsz, mem, memsz;
};

struct kl_inputs {
	const struct kl_plan *plan;
	struct kl_buf kernel, initrd;
	const char *cmdline; /* cmdline.txt, whitespace trimmed */
	struct kl_memmap *memory;
	struct kl_ranges *cma; /* the crashkernel=,cma ranges (kexec/crash_cma_ranges) */
	struct kl_crashinfo *info;
	struct kl_buf device_tree; /* the booted one; len 0 where there is none */
	int fresh_seeds; /* kaslr-seed and rng-seed from getrandom (a load; not a dry run) */
};

struct kl_layout {
	u64 entry, flags;
	struct kl_range region;
	int count;
	struct kl_segment segment[KL_MAX_SEGMENTS];
};

struct kl_placer {
	struct kl_range region;
	u64 limit;
	struct kl_ranges taken;
};

void kl_placer_init(struct kl_placer *placer, struct kl_range region, u64 limit);
struct kl_range kl_place(struct kl_placer *placer, const char *name, u64 size, u64 align,
			 u64 min, u64 max);
void kl_add_segment(struct kl_layout *layout, const char *name, const u8 *data, u64 bufsz,
		    struct kl_range where);

u64 kl_elfcore_size(const struct kl_crashinfo *info, const struct kl_ranges *ram);
u8 *kl_elfcore(const struct kl_crashinfo *info, const struct kl_ranges *ram, u64 machine,
	       u64 *size);

/* The purgatory at `where`, verifying every segment of `layout` so far, starting the
 * capture kernel with `values` for the registers named in `names`. Adds it last. */
void kl_add_purgatory(struct kl_layout *layout, const struct kl_plan *plan, struct kl_range where,
		      int nvalues, const char *const *names, const u64 *values);

void kl_plan_x86_64(const struct kl_inputs *inputs, struct kl_layout *layout);
void kl_plan_devicetree(const struct kl_inputs *inputs, struct kl_layout *layout);

#endif
