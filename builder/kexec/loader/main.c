/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * kdump-load: load the capture kernel that kdump-build wrote into OUTDIR with
 * kexec_load(KEXEC_ON_CRASH), on a device with no Python and no kexec-tools.
 *
 *   kdump-load OUTDIR                     load (root)
 *   kdump-load --dry-run OUTDIR           print the segments it would load
 *   kdump-load --dry-run --iomem FILE --sysfs DIR OUTDIR   the same for captured inputs
 *   kdump-load --unload | --status
 *
 * Every error is one line on stderr and exit status 1.
 */
#include "layout.h"
#include "sha256-fast.h"

KL_START_ASM;

#define KEXEC_ON_CRASH 1
#define EPERM 1
#define EBUSY 16
#define EINVAL 22
#define ENOSYS 38
#define EADDRNOTAVAIL 99

struct options {
	const char *outdir, *iomem, *sysfs, *corrupt;
	int dry_run, unload, status, verbose;
};

static const char usage[] =
	"usage: kdump-load [--dry-run] [--verbose] [--iomem FILE] [--sysfs DIR] OUTDIR | --unload | "
	"--status";

static void parse_args(int argc, char **argv, struct options *o)
{
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (kl_streq(a, "--dry-run"))
			o->dry_run = 1;
		else if (kl_streq(a, "--unload"))
			o->unload = 1;
		else if (kl_streq(a, "--status"))
			o->status = 1;
		else if (kl_streq(a, "--verbose"))
			o->verbose = 1;
		else if (kl_streq(a, "--testing-corrupt-segment") && i + 1 < argc)
			o->corrupt = argv[++i];
		else if ((kl_streq(a, "--iomem") || kl_streq(a, "--sysfs")) && i + 1 < argc)
			*(a[2] == 'i' ? &o->iomem : &o->sysfs) = argv[++i];
		else if (kl_streq(a, "--help") || kl_streq(a, "-h")) {
			kl_puts(usage);
			kl_puts("\n");
			kl_exit(0);
		} else if (a[0] == '-' || o->outdir)
			kl_fail("unexpected argument '", a, "'; ", usage);
		else
			o->outdir = a;
	}
	if (!o->unload && !o->status && !o->outdir)
		kl_fail(usage, 0, 0, 0);
	if ((o->iomem || o->sysfs) && !o->dry_run)
		kl_fail("--iomem and --sysfs describe another machine: only with --dry-run", 0, 0, 0);
}

static void hex_digest(const u8 *data, u64 len, char out[65])
{
	struct sha256_state state;
	u8 digest[32];
	sha256_init(&state);
	sha256_update(&state, data, len);
	sha256_final(&state, digest);
	for (int i = 0; i < 32; i++) {
		out[2 * i] = "0123456789abcdef"[digest[i] >> 4];
		out[2 * i + 1] = "0123456789abcdef"[digest[i] & 15];
	}
	out[64] = 0;
}

static int contains(const struct kl_buf *file, const char *text)
{
	size_t n = kl_strlen(text);
	for (size_t i = 0; i + n <= file->len; i++)
		if (!memcmp(file->data + i, text, n))
			return 1;
	return 0;
}

/* The file is the one the build wrote: its size and sha256 as the plan and manifest.json say. */
static void read_checked(const char *outdir, const struct kl_file_record *r,
			 const struct kl_buf *manifest, struct kl_buf *out)
{
	char sha[65];
	const char *path = kl_join(outdir, "/", r->name);
	kl_read_file(path, out, 0);
	hex_digest(out->data, out->len, sha);
	if (out->len != r->size || !kl_streq(sha, r->sha256))
		kl_fail(path, kl_join(": does not match manifest.json (", kl_dec_str(out->len),
				      " bytes, recorded "),
			kl_dec_str(r->size), "; truncated or replaced: build again)");
	/* manifest.json records the kernel's and initrd's sha256 (the command line as text) */
	if (manifest && !contains(manifest, kl_join("\"sha256\": \"", r->sha256, "\"")))
		kl_fail(kl_join(outdir, "/manifest.json", ""), ": does not record ", r->name,
			" as kdump-load.plan does (build again)");
}

/* The crashkernel=,cma ranges ("start-end" inclusive, hex, one a line), each inside System
 * RAM (builder/kexec/layout/inputs.py read_crash_cma); none without the file. */
static void read_cma(const char *root, const struct kl_memmap *memory, struct kl_ranges *out)
{
	static struct kl_ranges ram, outside;
	struct kl_buf file;
	out->count = 0;
	if (!kl_read_file(kl_join(root, "/sys/kernel/kexec/crash_cma_ranges", ""), &file, 1) &&
	    !kl_read_file(kl_join(root, "/sys/kernel/kexec_crash_cma_ranges", ""), &file, 1))
		return;
	const char *text = (const char *)file.data, *end = text + file.len;
	while (text < end) {
		const char *nl = text, *dash;
		while (nl < end && *nl != '\n')
			nl++;
		for (dash = text; dash < nl && *dash != '-'; dash++)
			;
		u64 first, last;
		if (dash < nl && kl_parse_hex(text, (size_t)(dash - text), &first) &&
		    kl_parse_hex(dash + 1, (size_t)(nl - dash - 1), &last) && first <= last &&
		    last != ~0ULL)
			kl_add_range(out, first, last + 1, 1);
		text = nl + 1;
	}
	kl_sort_ranges(out);
	kl_system_ram(memory, &ram);
	for (int i = 0; i < out->count; i++) {
		outside.count = 0;
		kl_add_range(&outside, out->item[i].start, out->item[i].end, 1);
		kl_subtract(&outside, &ram);
		if (outside.count)
			kl_fail_hex(kl_join(file.path, ": crashkernel=,cma range at ", ""), "",
				    out->item[i].start, " is not inside System RAM");
	}
}

static void read_inputs(const struct options *o, const struct kl_plan *plan,
			struct kl_inputs *in)
{
	struct kl_buf manifest, cmdline, iomem;
	static struct kl_memmap memory;
	static struct kl_crashinfo info;
	kl_read_file(kl_join(o->outdir, "/manifest.json", ""), &manifest, 0);
	read_checked(o->outdir, &plan->kernel, &manifest, &in->kernel);
	read_checked(o->outdir, &plan->initrd, &manifest, &in->initrd);
	read_checked(o->outdir, &plan->cmdline, 0, &cmdline);
	const char *text = (const char *)cmdline.data;
	size_t len = cmdline.len;
	kl_trim(&text, &len);
	char *command = kl_alloc(len + 1);
	memcpy(command, text, len);
	in->cmdline = command;
	kl_read_file(o->iomem ? o->iomem : "/proc/iomem", &iomem, 0);
	kl_parse_iomem(&iomem, &memory);
	static struct kl_ranges crash;
	kl_crash_ranges(&memory, &crash);
	if (!crash.count)
		kl_fail(iomem.path, ": no 'Crash kernel' range (boot with crashkernel=)", 0, 0);
	static struct kl_ranges cma;
	read_cma(o->sysfs ? o->sysfs : "", &memory, &cma);
	in->cma = &cma;
	kl_read_crashinfo(o->sysfs ? o->sysfs : "", plan, &info);
	kl_read_file(kl_join(o->sysfs ? o->sysfs : "", "/sys/firmware/fdt", ""), &in->device_tree, 1);
	in->plan = plan;
	in->fresh_seeds = !o->dry_run;
	in->memory = &memory;
	in->info = &info;
}

static void print_layout(const struct kl_layout *layout)
{
	for (int i = 0; i < layout->count; i++) {
		const struct kl_segment *s = &layout->segment[i];
		char sha[65];
		hex_digest(s->data, s->bufsz, sha);
		kl_puts("segment ");
		kl_puts(s->name);
		const char *fields[] = {kl_hex_str(s->mem), kl_hex_str(s->memsz),
					kl_hex_str(s->bufsz), sha};
		for (int f = 0; f < 4; f++) {
			kl_putc(' ');
			kl_puts(fields[f]);
		}
		kl_putc('\n');
	}
	kl_puts(kl_join("entry ", kl_hex_str(layout->entry), " flags "));
	kl_puts(kl_hex_str(layout->flags));
	kl_putc('\n');
}

static void pad(const char *text, int width, int right)
{
	int n = (int)kl_strlen(text);
	for (int i = n; right && i < width; i++)
		kl_putc(' ');
	kl_puts(text);
	for (int i = n; !right && i < width; i++)
		kl_putc(' ');
}

static const char *hex_width(u64 value, int digits)
{
	const char *hex = kl_hex_str(value) + 2;
	char *out = kl_alloc((size_t)digits + 3);
	int n = (int)kl_strlen(hex), zeros = digits > n ? digits - n : 0;
	out[0] = '0', out[1] = 'x';
	memset(out + 2, '0', (size_t)zeros);
	memcpy(out + 2 + zeros, hex, (size_t)n + 1);
	return out;
}

/* The table `kdump-build load --verbose` prints (builder/kexec/layout/core.py describe_layout). */
static void describe_layout(const struct kl_layout *layout)
{
	const struct kl_range r = layout->region;
	kl_puts(kl_join("crash region ", hex_width(r.start, 12), "-"));
	kl_puts(kl_join(hex_width(r.end - 1, 12), " (", kl_dec_str((r.end - r.start) >> 20)));
	kl_puts(" MiB)\nsegment                 mem      memsz      bufsz  sha256\n");
	int order[KL_MAX_SEGMENTS];
	for (int i = 0; i < layout->count; i++) {
		int j = i;
		while (j && layout->segment[order[j - 1]].mem > layout->segment[i].mem) {
			order[j] = order[j - 1];
			j--;
		}
		order[j] = i;
	}
	for (int i = 0; i < layout->count; i++) {
		const struct kl_segment *s = &layout->segment[order[i]];
		char sha[65];
		hex_digest(s->data, s->bufsz, sha);
		sha[16] = 0;
		pad(s->name, 12, 0);
		kl_putc(' ');
		pad(hex_width(s->mem, 12), 14, 1);
		kl_putc(' ');
		pad(kl_hex_str(s->memsz), 10, 1);
		kl_putc(' ');
		pad(kl_hex_str(s->bufsz), 10, 1);
		kl_puts(kl_join("  ", sha, "\n"));
	}
	kl_puts(kl_join("entry ", kl_hex_str(layout->entry), " flags "));
	kl_puts(kl_join(kl_hex_str(layout->flags), "\n", ""));
}

/* TEST-ONLY (--testing-corrupt-segment): one byte of a segment changed after the
 * purgatory's digest, to show that the purgatory then refuses to start the capture. */
static void corrupt(struct kl_layout *layout, const char *name)
{
	for (int i = 0; i < layout->count; i++) {
		struct kl_segment *s = &layout->segment[i];
		if (!kl_streq(s->name, name) || !s->bufsz)
			continue;
		u8 *copy = kl_alloc(s->bufsz);
		memcpy(copy, s->data, s->bufsz);
		copy[s->bufsz / 2] ^= 0xff;
		s->data = copy;
		kl_puts(kl_join("TESTING: corrupted segment '", name, "'\n"));
		return;
	}
	kl_fail("--testing-corrupt-segment: no segment '", name, "'", 0);
}

static int locked_down(void)
{
	struct kl_buf file;
	if (!kl_read_file("/sys/kernel/security/lockdown", &file, 1))
		return 0;
	return contains(&file, "[integrity]") || contains(&file, "[confidentiality]");
}

static void kexec(u64 entry, u64 count, const struct kl_segment *segments, u64 flags)
{
	static u64 raw[KL_MAX_SEGMENTS][4];
	for (u64 i = 0; i < count; i++) {
		raw[i][0] = (u64)(uintptr_t)segments[i].data;
		raw[i][1] = segments[i].bufsz;
		raw[i][2] = segments[i].mem;
		raw[i][3] = segments[i].memsz;
	}
	long err = -kl_sys(SYS_kexec_load, (long)entry, (long)count, (long)raw, (long)flags, 0, 0);
	if (err <= 0)
		return;
	if (err == EPERM && locked_down())
		kl_fail("kexec_load: refused by kernel lockdown (secure boot); only a signed kernel "
			"loaded with kexec_file_load can be used", 0, 0, 0);
	if (err == EPERM)
		kl_fail("kexec_load: operation not permitted (run as root, with CAP_SYS_BOOT)", 0, 0, 0);
	if (err == ENOSYS)
		kl_fail("kexec_load: not in this kernel (CONFIG_KEXEC is off)", 0, 0, 0);
	if (err == EBUSY)
		kl_fail("kexec_load: busy (another load is in progress)", 0, 0, 0);
	kl_fail("kexec_load: error ", kl_dec_str((u64)err),
		err == EADDRNOTAVAIL ? " (a segment outside the crash region)"
		: err == EINVAL ? " (invalid argument)" : "", 0);
}

static void require_root(void)
{
	if (kl_sys(SYS_geteuid, 0, 0, 0, 0, 0, 0) != 0)
		kl_fail("not root: loading a crash kernel needs root (CAP_SYS_BOOT)", 0, 0, 0);
}

static int status(void)
{
	/* Linux 6.19 moved it to /sys/kernel/kexec/ (builder/kexecfs.py); older kernels: flat */
	struct kl_buf file;
	if (!kl_read_file("/sys/kernel/kexec/crash_loaded", &file, 1) &&
	    !kl_read_file("/sys/kernel/kexec_crash_loaded", &file, 1))
		kl_fail("/sys/kernel/kexec_crash_loaded: No such file or directory (a kernel "
			"without kexec, or no sysfs)", 0, 0, 0);
	int loaded = file.len && file.data[0] == '1';
	kl_puts(loaded ? "crash kernel loaded\n" : "no crash kernel loaded\n");
	return 0;
}

static int run(const struct options *o)
{
	static struct kl_plan plan;
	static struct kl_inputs inputs;
	static struct kl_layout layout;
	if (o->status)
		return status();
	if (!o->dry_run)
		require_root();
	if (o->unload) {
		kexec(0, 0, 0, KEXEC_ON_CRASH | ((u64)KL_ELF_MACHINE << 16));
		return 0;
	}
	const char *plan_path = kl_join(o->outdir, "/kdump-load.plan", "");
	kl_read_plan(plan_path, &plan);
	if (!kl_streq(plan.arch, KL_ARCH_NAME))
		kl_fail(plan_path, kl_join(": the build is for ", plan.arch, ", this kdump-load is for "),
			KL_ARCH_NAME, kl_join(" (use kdump-load-", plan.arch, ")"));
	if (plan.backup)
		kl_fail(plan_path, ": backup 0x1: the backup region (kernel.backup_region) is not "
			"supported by kdump-load; use kdump-build load", 0, 0);
	read_inputs(o, &plan, &inputs);
	if (plan.setup_end)
		kl_plan_x86_64(&inputs, &layout);
	else
		kl_plan_devicetree(&inputs, &layout);
	if (o->corrupt)
		corrupt(&layout, o->corrupt);
	if (o->verbose)
		describe_layout(&layout);
	kl_flush();
	if (o->dry_run)
		print_layout(&layout);
	else {
		kexec(layout.entry, (u64)layout.count, layout.segment, layout.flags);
		kl_puts(kl_join("loaded ", kl_dec_str((u64)layout.count), " segments with kexec_load\n"));
	}
	return 0;
}

int kl_start_c(long *stack);

int kl_start_c(long *stack)
{
	static struct options options;
	int argc = (int)stack[0];
	char **argv = (char **)(stack + 1);
	parse_args(argc, argv, &options);
	kl_exit(run(&options));
}
