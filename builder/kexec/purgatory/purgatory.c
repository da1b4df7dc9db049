/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The architecture-neutral part of the purgatory: check that the segments
 * the crashed kernel copied are the ones kdump-build computed, then (if
 * asked) save the low memory the capture kernel is about to reuse.
 *
 * Everything the loader patches lives in .data, never .bss: .bss is not in
 * the segment's bytes, so a patched value there would be lost.
 */
#include <stddef.h>
#include <stdint.h>

#include "sha256.h"

#define PURGATORY_MAX_REGIONS 16 /* KEXEC_SEGMENT_MAX: one region per segment at most */
#define PATCHED __attribute__((section(".data")))

struct purgatory_region {
	uint64_t start;
	uint64_t len;                  /* memsz; a zero len ends the table */
};

struct purgatory_backup {
	uint64_t src;
	uint64_t dst;
	uint64_t size;                 /* zero: no backup wanted */
};

PATCHED uint8_t purgatory_sha256_digest[SHA256_DIGEST_SIZE];
PATCHED struct purgatory_region purgatory_sha256_regions[PURGATORY_MAX_REGIONS];
PATCHED struct purgatory_backup purgatory_backup;

int purgatory_main(void);

static int regions_match_digest(void)
{
	struct sha256_state state;
	uint8_t digest[SHA256_DIGEST_SIZE];
	uint8_t difference = 0;
	int i;

	sha256_init(&state);
	for (i = 0; i < PURGATORY_MAX_REGIONS; i++) {
		const struct purgatory_region *region = &purgatory_sha256_regions[i];

		if (region->len == 0)
			break;
		/* Identity-mapped by the crashed kernel: physical address == pointer. */
		sha256_update(&state, (const void *)(uintptr_t)region->start, region->len);
	}
	sha256_final(&state, digest);

	for (i = 0; i < SHA256_DIGEST_SIZE; i++)
		difference |= digest[i] ^ purgatory_sha256_digest[i];
	return difference == 0;
}

static void copy_backup(void)
{
	const uint8_t *src = (const uint8_t *)(uintptr_t)purgatory_backup.src;
	uint8_t *dst = (uint8_t *)(uintptr_t)purgatory_backup.dst;
	uint64_t i;

	/* A plain loop: built with -fno-tree-loop-distribute-patterns so gcc
	 * does not turn it into a call to a memcpy we do not have. */
	for (i = 0; i < purgatory_backup.size; i++)
		dst[i] = src[i];
}

/*
 * Returns 1 when the segments are intact (after taking the backup), 0 when
 * they are not: the caller then halts instead of jumping into corrupt memory.
 */
int purgatory_main(void)
{
	if (!regions_match_digest())
		return 0;
	if (purgatory_backup.size != 0)
		copy_backup();
	return 1;
}
