/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * kdump-load's own tiny runtime: syscalls, memory, strings, numbers, files,
 * and the one-line error that ends the program. No libc: a static glibc alone
 * is larger than the 256 KiB the whole loader may be.
 */
#ifndef KL_LIB_H
#define KL_LIB_H

#include <stddef.h>
#include <stdint.h>

typedef uint64_t u64;
typedef uint32_t u32;
typedef uint16_t u16;
typedef uint8_t u8;

#define KL_PAGE 4096ULL
#define KL_AT_FDCWD (-100)

long kl_sys(long n, long a, long b, long c, long d, long e, long f);
_Noreturn void kl_exit(int code);
void kl_write_all(int fd, const char *text, size_t len);

/* Output: a buffer flushed on newline-free demand (kl_flush) and at exit. */
void kl_puts(const char *text);
void kl_putc(char c);
void kl_put_hex(u64 value);
void kl_put_dec(u64 value);
void kl_flush(void);

/* Errors: "kdump-load: " + the parts, one line on stderr, exit status 1. */
_Noreturn void kl_fail(const char *a, const char *b, const char *c, const char *d);
_Noreturn void kl_fail_hex(const char *a, const char *b, u64 value, const char *c);
const char *kl_hex_str(u64 value);
const char *kl_dec_str(u64 value);

void *memcpy(void *dst, const void *src, size_t n);
void *memset(void *dst, int c, size_t n);
void *memmove(void *dst, const void *src, size_t n);
int memcmp(const void *a, const void *b, size_t n);
size_t kl_strlen(const char *s);
int kl_streq(const char *a, const char *b);
int kl_starts(const char *s, const char *prefix);
char *kl_join(const char *a, const char *b, const char *c);

/* Memory that lives until exit: anonymous mmap, never freed. */
void *kl_alloc(size_t size);

struct kl_buf {
	const char *path;
	u8 *data;
	size_t len;
};

/* Whole file (regular or sysfs/procfs); `optional` returns 0 when it is absent. */
int kl_read_file(const char *path, struct kl_buf *out, int optional);
/* The first `len` bytes at `offset` (kcore's headers), fewer at the end of the file. */
size_t kl_read_at(const char *path, void *buf, size_t len, u64 offset);

/* Numbers as sysfs and iomem write them; return 0 when `text` is not one. */
int kl_parse_hex(const char *text, size_t len, u64 *value);
int kl_parse_dec(const char *text, size_t len, u64 *value);
/* Trim ASCII whitespace on both sides of [*start, *start + *len). */
void kl_trim(const char **start, size_t *len);

static inline u64 kl_align_up(u64 value, u64 align) { return (value + align - 1) & ~(align - 1); }
static inline u64 kl_align_down(u64 value, u64 align) { return value & ~(align - 1); }
static inline void kl_put_le(u8 *p, u64 v, int bytes)
{
	for (int i = 0; i < bytes; i++)
		p[i] = (u8)(v >> (8 * i));
}
static inline u64 kl_get_le(const u8 *p, int bytes)
{
	u64 v = 0;
	for (int i = bytes - 1; i >= 0; i--)
		v = (v << 8) | p[i];
	return v;
}

#endif
