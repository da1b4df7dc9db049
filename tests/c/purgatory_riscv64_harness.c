/*
 * Test harness for the riscv64 purgatory object, run under qemu-riscv64 (user mode).
 * No libc: it is linked with purgatory-riscv64.o exactly as shipped.
 *
 *   harness sha    stdin: repeated {u32 len, bytes}; prints one hex digest per message,
 *                  feeding sha256_update in irregular chunks
 *   harness main   stdin: the 32-byte SHA-256 of regions A||B (computed by Python);
 *                  runs purgatory_main() intact, corrupted, and with a backup copy
 *   harness enter  calls purgatory_enter_kernel(hartid), which jumps into report_regs()
 */
#include <stddef.h>
#include <stdint.h>

#include "sha256.h"

struct region { uint64_t start, len; };
struct backup { uint64_t src, dst, size; };
extern uint8_t purgatory_sha256_digest[32];
extern struct region purgatory_sha256_regions[16];
extern struct backup purgatory_backup;
extern uint64_t purgatory_entry_regs[2];
extern int purgatory_main(void);
extern void purgatory_enter_kernel(uint64_t hartid);

static long sys3(long n, long a, long b, long c)
{
	register long a7 __asm__("a7") = n;
	register long a0 __asm__("a0") = a;
	register long a1 __asm__("a1") = b;
	register long a2 __asm__("a2") = c;
	__asm__ volatile("ecall" : "+r"(a0) : "r"(a7), "r"(a1), "r"(a2) : "memory");
	return a0;
}

static void out(const char *s, size_t n) { sys3(64, 1, (long)s, (long)n); }
static void outs(const char *s) { size_t n = 0; while (s[n]) n++; out(s, n); }
static __attribute__((noreturn)) void quit(int code) { sys3(93, code, 0, 0); for (;;) ; }

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

/* mmap'd, not .bss: a 48 MiB .bss has no business in a static test binary. */
#define INPUT_SIZE (48u << 20)
static uint8_t *input;

static long sys6(long n, long a, long b, long c, long d, long e, long f)
{
	register long a7 __asm__("a7") = n;
	register long a0 __asm__("a0") = a;
	register long a1 __asm__("a1") = b;
	register long a2 __asm__("a2") = c;
	register long a3 __asm__("a3") = d;
	register long a4 __asm__("a4") = e;
	register long a5 __asm__("a5") = f;
	__asm__ volatile("ecall" : "+r"(a0) : "r"(a7), "r"(a1), "r"(a2), "r"(a3), "r"(a4), "r"(a5) : "memory");
	return a0;
}

static size_t read_all(void)
{
	size_t got = 0;
	long n;
	/* mmap(NULL, size, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0) */
	input = (uint8_t *)sys6(222, 0, INPUT_SIZE, 3, 0x22, -1, 0);
	while ((n = sys3(63, 0, (long)(input + got), (long)(INPUT_SIZE - got))) > 0)
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

void report_regs(uint64_t a0, uint64_t a1);
void report_regs(uint64_t a0, uint64_t a1)
{
	outs("a0="); outhex(a0, 0);
	outs(" a1="); outhex(a1, 16);
	outs("\n");
	quit(0);
}

static void mode_enter(void)
{
	purgatory_entry_regs[0] = 0x1feedbeef8;
	purgatory_entry_regs[1] = (uint64_t)(uintptr_t)report_regs;
	purgatory_enter_kernel(3);	/* the hart id, which the purgatory keeps in a0 */
	quit(5);
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

__asm__(".globl _start\n_start:\n\tmv a0, sp\n\tcall cmain\n\tj .\n");
