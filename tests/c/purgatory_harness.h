/*
 * What the purgatory harnesses of the asm-generic syscall architectures share
 * (tests/c/purgatory_<arch>_harness.c include it): output, input, the sha and
 * main modes and the dispatch. Before including it, the harness defines
 * sys3() and sys6() (its syscall instruction); after it, mode_enter() and
 * _start. Syscall numbers: include/uapi/asm-generic/unistd.h.
 */
#include <stddef.h>
#include <stdint.h>

#include "sha256.h"

#define SYS_READ 63
#define SYS_WRITE 64
#define SYS_EXIT 93
#define SYS_MMAP 222

struct region { uint64_t start, len; };
struct backup { uint64_t src, dst, size; };
extern uint8_t purgatory_sha256_digest[32];
extern struct region purgatory_sha256_regions[16];
extern struct backup purgatory_backup;
extern int purgatory_main(void);

static long sys3(long n, long a, long b, long c);
static long sys6(long n, long a, long b, long c, long d, long e, long f);
static void mode_enter(void);

static void out(const char *s, size_t n) { sys3(SYS_WRITE, 1, (long)s, (long)n); }
static void outs(const char *s) { size_t n = 0; while (s[n]) n++; out(s, n); }
static __attribute__((noreturn)) void quit(int code) { sys3(SYS_EXIT, code, 0, 0); for (;;) ; }

static void outhex(uint64_t v, int digits)
{
	char b[16];
	int i;
	if (digits == 0) {               /* shortest form */
		digits = 1;
		while (digits < 16 && (v >> (4 * digits)))
			digits++;
	}
	for (i = 0; i < digits; i++)
		b[i] = "0123456789abcdef"[(v >> (4 * (digits - 1 - i))) & 15];
	out(b, (size_t)digits);
}

/* mmap'd, not .bss: a big .bss would put the purgatory's stack out of PC-relative range. */
#define INPUT_SIZE (48u << 20)
static uint8_t *input;

static size_t read_all(void)
{
	size_t got = 0;
	long n;
	/* mmap(NULL, size, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0) */
	input = (uint8_t *)sys6(SYS_MMAP, 0, INPUT_SIZE, 3, 0x22, -1, 0);
	while ((n = sys3(SYS_READ, 0, (long)(input + got), (long)(INPUT_SIZE - got))) > 0)
		got += (size_t)n;
	return got;
}

static void mode_sha(void)
{
	static const size_t chunks[] = { 1, 3, 64, 17, 1000, 63, 65, 128, 4096, 7 };
	size_t total = read_all(), pos = 0, k = 0;
	while (pos + 4 <= total) {
		uint32_t len = (uint32_t)input[pos] | (uint32_t)input[pos + 1] << 8 |
			       (uint32_t)input[pos + 2] << 16 | (uint32_t)input[pos + 3] << 24;
		const uint8_t *msg = input + pos + 4;
		struct sha256_state st;
		uint8_t d[32];
		size_t done = 0;
		int i;
		sha256_init(&st);
		while (done < len) {
			size_t c = chunks[k++ % 10];
			if (c > len - done)
				c = len - done;
			sha256_update(&st, msg + done, c);
			done += c;
		}
		sha256_final(&st, d);
		for (i = 0; i < 32; i++)
			outhex(d[i], 2);
		outs("\n");
		pos += 4 + len;
	}
}

static uint8_t region_a[5000], region_b[8192], backup_src[300], backup_dst[300];

static void mode_main(void)
{
	size_t i;
	int intact, corrupt;
	if (read_all() != 32)
		quit(2);
	for (i = 0; i < sizeof(region_a); i++)
		region_a[i] = (uint8_t)(i * 7 + 3);
	for (i = 0; i < sizeof(region_b); i++)
		region_b[i] = (uint8_t)(i * 13 + 5);
	for (i = 0; i < 32; i++)
		purgatory_sha256_digest[i] = input[i];
	purgatory_sha256_regions[0] = (struct region){ (uint64_t)(uintptr_t)region_a, sizeof(region_a) };
	purgatory_sha256_regions[1] = (struct region){ (uint64_t)(uintptr_t)region_b, sizeof(region_b) };
	intact = purgatory_main();
	region_b[4321] ^= 0x40;
	corrupt = purgatory_main();
	region_b[4321] ^= 0x40;
	for (i = 0; i < sizeof(backup_src); i++)
		backup_src[i] = (uint8_t)(255 - i);
	purgatory_backup = (struct backup){ (uint64_t)(uintptr_t)backup_src,
					    (uint64_t)(uintptr_t)backup_dst, sizeof(backup_src) };
	outs("intact="); outhex((uint64_t)intact, 0);
	outs(" corrupt="); outhex((uint64_t)corrupt, 0);
	if (purgatory_main() != 1)
		quit(3);
	for (i = 0; i < sizeof(backup_src); i++)
		if (backup_dst[i] != backup_src[i])
			quit(4);
	outs(" backup=ok\n");
}

void cmain(uint64_t *sp);
void cmain(uint64_t *sp)
{
	char **argv = (char **)(sp + 1);
	const char *mode = sp[0] > 1 ? argv[1] : "";
	if (mode[0] == 's')
		mode_sha();
	else if (mode[0] == 'm')
		mode_main();
	else if (mode[0] == 'e')
		mode_enter();
	else
		quit(1);
	quit(0);
}
