/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * SHA-256 (FIPS 180-4) for kdump-load, written for speed. Hashing is nearly all
 * of kdump-load's time (callgrind: 99% in the compression function): it checks
 * the kernel and initrd against the build's manifest, then the purgatory digest
 * covers every segment up to its memsz, and for an x86_64 bzImage that is tens
 * of MiB of zeros after the kernel (init_size). Under an emulated CPU (TCG) the
 * purgatory's clear, rolled sha256.c made the loader slower than kexec-tools.
 *
 * Two things make this one faster, the result is the same:
 * - the 64 rounds are unrolled eight at a time with the working variables
 *   renamed instead of shifted, and the message schedule lives in 16 words;
 * - a block of zeros has a message schedule of zeros (sigma0(0) = sigma1(0) = 0,
 *   so every W[t] is 0), so sha256_update_zeros runs the rounds alone.
 * The API is the purgatory's (../purgatory/sha256.h), which stays as it is: its
 * bytes are part of the shipped purgatory objects. The loader's byte-identity
 * test (every segment's sha256 and the purgatory digest against Python's
 * hashlib) and tests/unit/kexec/test_loader_sha256.py check this file.
 */
#include "sha256-fast.h"

static const uint32_t round_constants[64] = {
	0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
	0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
	0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
	0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
	0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
	0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
	0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
	0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
};

#define ROTR(x, n) (((x) >> (n)) | ((x) << (32 - (n))))
#define BIG_SIGMA0(a) (ROTR(a, 2) ^ ROTR(a, 13) ^ ROTR(a, 22))
#define BIG_SIGMA1(e) (ROTR(e, 6) ^ ROTR(e, 11) ^ ROTR(e, 25))
#define SMALL_SIGMA0(w) (ROTR(w, 7) ^ ROTR(w, 18) ^ ((w) >> 3))
#define SMALL_SIGMA1(w) (ROTR(w, 17) ^ ROTR(w, 19) ^ ((w) >> 10))
#define CHOOSE(e, f, g) ((g) ^ ((e) & ((f) ^ (g))))
#define MAJORITY(a, b, c) (((a) & (b)) | ((c) & ((a) | (b))))

/* Round t with message word `word`: the caller renames a..h instead of shifting them. */
#define ROUND(a, b, c, d, e, f, g, h, t, word)                                          \
	do {                                                                            \
		uint32_t t1 = h + BIG_SIGMA1(e) + CHOOSE(e, f, g) + round_constants[t] + (word); \
		d += t1;                                                                \
		h = t1 + BIG_SIGMA0(a) + MAJORITY(a, b, c);                             \
	} while (0)

#define EIGHT_ROUNDS(t, WORD)                                   \
	do {                                                    \
		ROUND(a, b, c, d, e, f, g, h, (t) + 0, WORD((t) + 0)); \
		ROUND(h, a, b, c, d, e, f, g, (t) + 1, WORD((t) + 1)); \
		ROUND(g, h, a, b, c, d, e, f, (t) + 2, WORD((t) + 2)); \
		ROUND(f, g, h, a, b, c, d, e, (t) + 3, WORD((t) + 3)); \
		ROUND(e, f, g, h, a, b, c, d, (t) + 4, WORD((t) + 4)); \
		ROUND(d, e, f, g, h, a, b, c, (t) + 5, WORD((t) + 5)); \
		ROUND(c, d, e, f, g, h, a, b, (t) + 6, WORD((t) + 6)); \
		ROUND(b, c, d, e, f, g, h, a, (t) + 7, WORD((t) + 7)); \
	} while (0)

static uint32_t load_be32(const uint8_t *p)
{
	return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

static void store_be32(uint8_t *p, uint32_t x)
{
	p[0] = (uint8_t)(x >> 24);
	p[1] = (uint8_t)(x >> 16);
	p[2] = (uint8_t)(x >> 8);
	p[3] = (uint8_t)x;
}

/* W[t]: the block's words for t < 16, then computed in place in a ring of 16 words. */
#define LOADED(t) w[t]
#define SCHEDULED(t)                                                                  \
	(w[(t) & 15] += SMALL_SIGMA1(w[((t) - 2) & 15]) + w[((t) - 7) & 15] +          \
			SMALL_SIGMA0(w[((t) - 15) & 15]))
#define ZERO(t) 0u

static void compress(uint32_t state[8], const uint8_t *block)
{
	uint32_t w[16];
	uint32_t a = state[0], b = state[1], c = state[2], d = state[3];
	uint32_t e = state[4], f = state[5], g = state[6], h = state[7];
	for (int i = 0; i < 16; i++)
		w[i] = load_be32(block + 4 * i);
	EIGHT_ROUNDS(0, LOADED);
	EIGHT_ROUNDS(8, LOADED);
	for (int t = 16; t < 64; t += 8)
		EIGHT_ROUNDS(t, SCHEDULED);
	state[0] += a, state[1] += b, state[2] += c, state[3] += d;
	state[4] += e, state[5] += f, state[6] += g, state[7] += h;
}

/* compress() of 64 zero bytes: every message word is zero. */
static void compress_zeros(uint32_t state[8])
{
	uint32_t a = state[0], b = state[1], c = state[2], d = state[3];
	uint32_t e = state[4], f = state[5], g = state[6], h = state[7];
	for (int t = 0; t < 64; t += 8)
		EIGHT_ROUNDS(t, ZERO);
	state[0] += a, state[1] += b, state[2] += c, state[3] += d;
	state[4] += e, state[5] += f, state[6] += g, state[7] += h;
}

void sha256_init(struct sha256_state *state)
{
	static const uint32_t initial[8] = {
		0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
		0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
	};
	for (int i = 0; i < 8; i++)
		state->h[i] = initial[i];
	state->total_bytes = 0;
	state->buffered = 0;
}

/* One byte into the partial block; compresses it when it is full. */
static void buffer_byte(struct sha256_state *state, uint8_t byte)
{
	state->block[state->buffered++] = byte;
	if (state->buffered == SHA256_BLOCK_SIZE) {
		compress(state->h, state->block);
		state->buffered = 0;
	}
}

void sha256_update(struct sha256_state *state, const void *data, size_t len)
{
	const uint8_t *in = data;
	state->total_bytes += len;
	while (len && state->buffered) {
		buffer_byte(state, *in++);
		len--;
	}
	/* Whole blocks straight from the input: no copy on the hot path. */
	for (; len >= SHA256_BLOCK_SIZE; in += SHA256_BLOCK_SIZE, len -= SHA256_BLOCK_SIZE)
		compress(state->h, in);
	while (len--)
		buffer_byte(state, *in++);
}

void sha256_update_zeros(struct sha256_state *state, uint64_t len)
{
	state->total_bytes += len;
	while (len && state->buffered) {
		buffer_byte(state, 0);
		len--;
	}
	for (; len >= SHA256_BLOCK_SIZE; len -= SHA256_BLOCK_SIZE)
		compress_zeros(state->h);
	while (len--)
		buffer_byte(state, 0);
}

void sha256_final(struct sha256_state *state, uint8_t digest[SHA256_DIGEST_SIZE])
{
	uint64_t total_bits = state->total_bytes * 8;
	/* Padding: 0x80, zeros up to 56 mod 64, then the bit length big-endian. */
	buffer_byte(state, 0x80);
	while (state->buffered != SHA256_BLOCK_SIZE - 8)
		buffer_byte(state, 0);
	store_be32(state->block + 56, (uint32_t)(total_bits >> 32));
	store_be32(state->block + 60, (uint32_t)total_bits);
	compress(state->h, state->block);
	for (int i = 0; i < 8; i++)
		store_be32(digest + 4 * i, state->h[i]);
}
