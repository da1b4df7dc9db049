/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * SHA-256 (FIPS 180-4) for the purgatory. Freestanding: no libc, no SSE,
 * so the same file builds for the purgatory object and for the host test.
 */
#ifndef PURGATORY_SHA256_H
#define PURGATORY_SHA256_H

#include <stddef.h>
#include <stdint.h>

#define SHA256_DIGEST_SIZE 32
#define SHA256_BLOCK_SIZE 64

struct sha256_state {
	uint32_t h[8];
	uint64_t total_bytes;
	size_t buffered;               /* bytes waiting in block[] */
	uint8_t block[SHA256_BLOCK_SIZE];
};

void sha256_init(struct sha256_state *state);
void sha256_update(struct sha256_state *state, const void *data, size_t len);
void sha256_final(struct sha256_state *state, uint8_t digest[SHA256_DIGEST_SIZE]);

#endif
