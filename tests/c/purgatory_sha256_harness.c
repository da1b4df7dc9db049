/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Host-side wrapper around builder/kexec/purgatory/sha256.c for the tests: hashes
 * `len` bytes fed to sha256_update in pieces of the given sizes (cycled), so
 * the buffering across block boundaries is exercised, not just one call.
 */
#include <stddef.h>
#include <stdint.h>

#include "sha256.h"

void harness_sha256(const uint8_t *data, size_t len, const size_t *pieces, size_t piece_count,
		    uint8_t digest[SHA256_DIGEST_SIZE])
{
	struct sha256_state state;
	size_t done = 0, next = 0;

	sha256_init(&state);
	while (done < len) {
		size_t piece = piece_count ? pieces[next++ % piece_count] : len;

		if (piece > len - done)
			piece = len - done;
		sha256_update(&state, data + done, piece);
		done += piece;
	}
	sha256_final(&state, digest);
}
