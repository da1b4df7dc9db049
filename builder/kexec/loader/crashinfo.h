/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * What the running kernel says about its crash data (builder/kexec/crashinfo.py
 * reads the same files): possible CPUs' crash_notes, vmcoreinfo, the kernel
 * text and direct map from kcore's program headers, the ACPI RSDP (x86).
 */
#ifndef KL_CRASHINFO_H
#define KL_CRASHINFO_H

#include "lib.h"
#include "plan.h"

#define KL_MAX_CPUS 8192

struct kl_crashinfo {
	int ncpus;
	u64 note_addr[KL_MAX_CPUS], note_size[KL_MAX_CPUS];
	u64 vmcoreinfo_addr, vmcoreinfo_size;
	int have_text;
	u64 text_vaddr, text_paddr, text_size;
	u64 page_offset; /* 0: unknown (the ELF core header then leaves vaddr 0) */
	u64 acpi_rsdp;
};

/* `root` is "" on the live system, or a directory captured from one. */
void kl_read_crashinfo(const char *root, const struct kl_plan *plan, struct kl_crashinfo *info);

#endif
