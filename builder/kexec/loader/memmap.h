/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * /proc/iomem as the layout reads it (builder/kexec/memmap.py holds the same
 * rules): half-open ranges, nesting from the indentation, System RAM and the
 * firmware ranges outside it, the crash ranges, and a top-down hole finder.
 */
#ifndef KL_MEMMAP_H
#define KL_MEMMAP_H

#include "lib.h"

#define KL_MAX_RANGES 4096

struct kl_range {
	u64 start, end; /* end exclusive */
	int type;       /* what a list of ranges needs to carry: an e820 type */
};

enum kl_kind { KIND_RAM, KIND_CRASH, KIND_ACPI, KIND_NVS, KIND_RESERVED, KIND_KERNEL,
	       KIND_PMEM, KIND_OTHER };

struct kl_ranges {
	int count;
	struct kl_range item[KL_MAX_RANGES];
};

struct kl_memmap {
	int count;
	struct { u64 start, end; enum kl_kind kind; int parent; } node[KL_MAX_RANGES];
};

void kl_parse_iomem(const struct kl_buf *file, struct kl_memmap *map);
/* Outermost System RAM, every crash range, firmware ranges outside RAM: sorted. */
void kl_system_ram(const struct kl_memmap *map, struct kl_ranges *out);
void kl_crash_ranges(const struct kl_memmap *map, struct kl_ranges *out);
void kl_firmware_regions(const struct kl_memmap *map, struct kl_ranges *out);

void kl_sort_ranges(struct kl_ranges *list);
void kl_add_range(struct kl_ranges *list, u64 start, u64 end, int type);
/* `list` minus every range of `holes`, sorted, empty pieces dropped. */
void kl_subtract(struct kl_ranges *list, const struct kl_ranges *holes);

/* Top-down: the highest start aligned to `align` with [start, start + size) inside
 * `region`, outside `taken`, within [min, max). Returns 0 when there is none. */
int kl_find_hole(struct kl_range region, const struct kl_ranges *taken, u64 size, u64 align,
		 u64 min, u64 max, u64 *start);

#endif
