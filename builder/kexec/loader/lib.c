/* SPDX-License-Identifier: GPL-2.0-only */
#include "lib.h"

#define O_RDONLY 0
#define O_CLOEXEC 02000000
#define PROT_RW 3
#define MAP_PRIVATE_ANON 0x22
#define ENOENT 2
#define EINTR 4

long kl_sys(long n, long a, long b, long c, long d, long e, long f)
{
	return kl_syscall6(n, a, b, c, d, e, f);
}

static char out_buf[4096];
static size_t out_len;

void kl_write_all(int fd, const char *text, size_t len)
{
	while (len) {
		long done = kl_sys(SYS_write, fd, (long)text, (long)len, 0, 0, 0);
		if (done == -EINTR)
			continue;
		if (done <= 0)
			return;
		text += done;
		len -= (size_t)done;
	}
}

void kl_flush(void)
{
	kl_write_all(1, out_buf, out_len);
	out_len = 0;
}

_Noreturn void kl_exit(int code)
{
	kl_flush();
	for (;;)
		kl_sys(SYS_exit_group, code, 0, 0, 0, 0, 0);
}

void kl_putc(char c)
{
	if (out_len == sizeof(out_buf))
		kl_flush();
	out_buf[out_len++] = c;
}

void kl_puts(const char *text)
{
	while (*text)
		kl_putc(*text++);
}

const char *kl_hex_str(u64 value)
{
	static char text[8][24];
	static int next;
	char *s = text[next++ & 7], tmp[16];
	int n = 0;
	do {
		tmp[n++] = "0123456789abcdef"[value & 15];
		value >>= 4;
	} while (value);
	s[0] = '0';
	s[1] = 'x';
	for (int i = 0; i < n; i++)
		s[2 + i] = tmp[n - 1 - i];
	s[2 + n] = 0;
	return s;
}

const char *kl_dec_str(u64 value)
{
	static char text[8][24];
	static int next;
	char *s = text[next++ & 7], tmp[24];
	int n = 0;
	do {
		tmp[n++] = (char)('0' + value % 10);
		value /= 10;
	} while (value);
	for (int i = 0; i < n; i++)
		s[i] = tmp[n - 1 - i];
	s[n] = 0;
	return s;
}

void kl_put_hex(u64 value) { kl_puts(kl_hex_str(value)); }
void kl_put_dec(u64 value) { kl_puts(kl_dec_str(value)); }

_Noreturn void kl_fail(const char *a, const char *b, const char *c, const char *d)
{
	const char *parts[] = {"kdump-load: ", a, b, c, d, "\n"};
	kl_flush();
	for (size_t i = 0; i < sizeof(parts) / sizeof(parts[0]); i++)
		if (parts[i])
			kl_write_all(2, parts[i], kl_strlen(parts[i]));
	for (;;)
		kl_sys(SYS_exit_group, 1, 0, 0, 0, 0, 0);
}

_Noreturn void kl_fail_hex(const char *a, const char *b, u64 value, const char *c)
{
	kl_fail(a, b, kl_hex_str(value), c);
}

void *memcpy(void *dst, const void *src, size_t n)
{
	u8 *d = dst;
	const u8 *s = src;
	while (n--)
		*d++ = *s++;
	return dst;
}

void *memmove(void *dst, const void *src, size_t n)
{
	u8 *d = dst;
	const u8 *s = src;
	if (d < s)
		return memcpy(dst, src, n);
	while (n--)
		d[n] = s[n];
	return dst;
}

void *memset(void *dst, int c, size_t n)
{
	u8 *d = dst;
	while (n--)
		*d++ = (u8)c;
	return dst;
}

int memcmp(const void *a, const void *b, size_t n)
{
	const u8 *x = a, *y = b;
	for (size_t i = 0; i < n; i++)
		if (x[i] != y[i])
			return x[i] < y[i] ? -1 : 1;
	return 0;
}

size_t kl_strlen(const char *s)
{
	size_t n = 0;
	while (s[n])
		n++;
	return n;
}

int kl_streq(const char *a, const char *b)
{
	size_t n = kl_strlen(a);
	return n == kl_strlen(b) && !memcmp(a, b, n);
}

int kl_starts(const char *s, const char *prefix)
{
	size_t n = kl_strlen(prefix);
	return kl_strlen(s) >= n && !memcmp(s, prefix, n);
}

char *kl_join(const char *a, const char *b, const char *c)
{
	size_t la = kl_strlen(a), lb = kl_strlen(b), lc = kl_strlen(c);
	char *s = kl_alloc(la + lb + lc + 1);
	memcpy(s, a, la);
	memcpy(s + la, b, lb);
	memcpy(s + la + lb, c, lc);
	s[la + lb + lc] = 0;
	return s;
}

void *kl_alloc(size_t size)
{
	long p = kl_sys(SYS_mmap, 0, (long)kl_align_up(size ? size : 1, KL_PAGE), PROT_RW,
			MAP_PRIVATE_ANON, -1, 0);
	if (p < 0 && p > -4096)
		kl_fail("out of memory (", kl_dec_str(size), " bytes)", 0);
	return (void *)p;
}

static const char *errno_text(long err)
{
	switch (err) {
	case 2: return "No such file or directory";
	case 13: return "Permission denied";
	case 21: return "Is a directory";
	case 20: return "Not a directory";
	default: return kl_join("error ", kl_dec_str((u64)err), "");
	}
}

static int open_read(const char *path, int optional)
{
	long fd = kl_sys(SYS_openat, KL_AT_FDCWD, (long)path, O_RDONLY | O_CLOEXEC, 0, 0, 0);
	if (fd == -ENOENT && optional)
		return -1;
	if (fd < 0)
		kl_fail(path, ": ", errno_text(-fd), 0);
	return (int)fd;
}

/* Up to `len` bytes at `offset`; fewer only at the end of the file. */
static size_t read_into(int fd, const char *path, u8 *buf, size_t len, u64 offset)
{
	size_t done = 0;
	while (done < len) {
		long got = kl_sys(SYS_pread64, fd, (long)(buf + done), (long)(len - done),
				  (long)(offset + done), 0, 0);
		if (got == -EINTR)
			continue;
		if (got < 0)
			kl_fail(path, ": ", errno_text(-got), 0);
		if (got == 0)
			break;
		done += (size_t)got;
	}
	return done;
}

/* st_size, 0 when fstat fails. Procfs and sysfs say 0 or 4096 whatever they hold: a
 * first guess only. Offset 48 in x86_64's struct stat and in the generic one. */
static size_t size_hint(int fd)
{
	u64 stat[32];
	if (kl_sys(SYS_fstat, fd, (long)stat, 0, 0, 0, 0) < 0)
		return 0;
	return (size_t)stat[6];
}

int kl_read_file(const char *path, struct kl_buf *out, int optional)
{
	int fd = open_read(path, optional);
	if (fd < 0)
		return 0;
	/* one byte more than the size, so a regular file is one read and no copy */
	size_t hint = size_hint(fd) + 1, cap = hint > (1 << 16) ? hint : 1 << 16, len = 0;
	u8 *data = kl_alloc(cap);
	for (;;) {
		len += read_into(fd, path, data + len, cap - len, len);
		if (len < cap)
			break;
		u8 *bigger = kl_alloc(cap * 4);
		memcpy(bigger, data, len);
		data = bigger; /* the old map stays: memory lives until exit */
		cap *= 4;
	}
	kl_sys(SYS_close, fd, 0, 0, 0, 0, 0);
	out->path = path;
	out->data = data;
	out->len = len;
	return 1;
}

size_t kl_read_at(const char *path, void *buf, size_t len, u64 offset)
{
	int fd = open_read(path, 0);
	size_t done = read_into(fd, path, buf, len, offset);
	kl_sys(SYS_close, fd, 0, 0, 0, 0, 0);
	return done;
}

static int digit(char c, int base)
{
	int v = c >= '0' && c <= '9' ? c - '0'
		: c >= 'a' && c <= 'f' ? c - 'a' + 10
		: c >= 'A' && c <= 'F' ? c - 'A' + 10 : 99;
	return v < base ? v : -1;
}

static int parse_base(const char *text, size_t len, u64 *value, int base)
{
	u64 v = 0;
	if (!len)
		return 0;
	for (size_t i = 0; i < len; i++) {
		int d = digit(text[i], base);
		if (d < 0 || v > (~0ULL - (u64)d) / (u64)base)
			return 0;
		v = v * (u64)base + (u64)d;
	}
	*value = v;
	return 1;
}

int kl_parse_hex(const char *text, size_t len, u64 *value)
{
	if (len > 2 && text[0] == '0' && (text[1] == 'x' || text[1] == 'X')) {
		text += 2;
		len -= 2;
	}
	return parse_base(text, len, value, 16);
}

int kl_parse_dec(const char *text, size_t len, u64 *value)
{
	return parse_base(text, len, value, 10);
}

static int is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'; }

void kl_trim(const char **start, size_t *len)
{
	while (*len && is_space(**start)) {
		(*start)++;
		(*len)--;
	}
	while (*len && is_space((*start)[*len - 1]))
		(*len)--;
}
