/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * kdump-load's SHA-256 (sha256-fast.c): the purgatory's API, plus zeros without
 * a buffer of them (a segment's memsz past its bufsz).
 */
#ifndef KL_SHA256_FAST_H
#define KL_SHA256_FAST_H

#include "../purgatory/sha256.h"

/* sha256_update() of `len` zero bytes. */
void sha256_update_zeros(struct sha256_state *state, uint64_t len);

#endif
