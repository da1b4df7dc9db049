/* SPDX-License-Identifier: GPL-2.0-only */
#include "crashinfo.h"

#define NO_PADDR (~0ULL)
#define MAX_KCORE_HEADERS (4u << 20)

static const char *root_path(const char *root, const char *relative)
{
	return kl_join(root, "/", relative);
}

static void read_text(const char *path, const char **text, size_t *len)
{
	struct kl_buf file;
	kl_read_file(path, &file, 0);
	*text = (const char *)file.data;
	*len = file.len;
	kl_trim(text, len);
}

static u64 read_number(const char *path, int hex)
{
	const char *text;
	size_t len;
	u64 value;
	read_text(path, &text, &len);
	if (!(hex ? kl_parse_hex(text, len, &value) : kl_parse_dec(text, len, &value)))
		kl_fail(path, hex ? ": not a hex number" : ": not a number", 0, 0);
	return value;
}

static void add_cpus(const char *path, struct kl_crashinfo *info, u64 low, u64 high)
{
	if (low > high || high >= KL_MAX_CPUS)
		kl_fail(path, ": bad CPU range", 0, 0);
	for (u64 cpu = low; cpu <= high; cpu++) {
		if (info->ncpus == KL_MAX_CPUS)
			kl_fail(path, ": more than 8192 CPUs", 0, 0);
		info->note_addr[info->ncpus++] = cpu; /* the CPU number, until its note is read */
	}
}

static void read_possible(const char *root, struct kl_crashinfo *info)
{
	const char *path = root_path(root, "sys/devices/system/cpu/possible"), *text;
	size_t len, i = 0;
	read_text(path, &text, &len);
	while (i < len) {
		size_t part = i, dash = 0;
		while (i < len && text[i] != ',') {
			if (text[i] == '-')
				dash = i;
			i++;
		}
		u64 low, high;
		if (i > part &&
		    !(dash ? kl_parse_dec(text + part, dash - part, &low) &&
				     kl_parse_dec(text + dash + 1, i - dash - 1, &high)
			   : kl_parse_dec(text + part, i - part, &low) && (high = low, 1)))
			kl_fail(path, ": not a CPU list", 0, 0);
		if (i > part)
			add_cpus(path, info, low, high);
		i++;
	}
	if (!info->ncpus)
		kl_fail(path, ": empty CPU list", 0, 0);
}

static void read_notes(const char *root, struct kl_crashinfo *info)
{
	for (int i = 0; i < info->ncpus; i++) {
		const char *dir = kl_join(root, "/sys/devices/system/cpu/cpu",
					  kl_dec_str(info->note_addr[i]));
		u64 address = read_number(kl_join(dir, "/crash_notes", ""), 1);
		u64 size = read_number(kl_join(dir, "/crash_notes_size", ""), 0);
		if (!address || !size)
			kl_fail(dir, ": crash_notes unusable (address or size 0)", 0, 0);
		info->note_addr[i] = address;
		info->note_size[i] = size;
	}
}

static void read_vmcoreinfo(const char *root, struct kl_crashinfo *info)
{
	const char *path = root_path(root, "sys/kernel/vmcoreinfo"), *text;
	size_t len, space = 0;
	read_text(path, &text, &len);
	while (space < len && text[space] != ' ')
		space++;
	const char *second = text + space;
	size_t second_len = len - space;
	kl_trim(&second, &second_len);
	if (space == len || !kl_parse_hex(text, space, &info->vmcoreinfo_addr) ||
	    !kl_parse_hex(second, second_len, &info->vmcoreinfo_size))
		kl_fail(path, ": expected '<address> <size>'", 0, 0);
}

/* Every PT_LOAD with a physical address: vaddr, paddr, memsz. */
static int kcore_loads(const char *path, u64 machine, u64 (*loads)[3], int max)
{
	u8 head[64];
	if (kl_read_at(path, head, 64, 0) < 64 || memcmp(head, "\177ELF", 4))
		kl_fail(path, ": not an ELF file", 0, 0);
	if (head[4] != 2 || head[5] != 1)
		kl_fail(path, ": not a 64-bit little-endian ELF file", 0, 0);
	u64 found = kl_get_le(head + 0x12, 2);
	if (found != machine)
		kl_fail(path, kl_join(": byte 0x12: e_machine ", kl_dec_str(found), ", the plan is for "),
			kl_dec_str(machine), " (captured on another machine?)");
	u64 phoff = kl_get_le(head + 0x20, 8), size = kl_get_le(head + 0x36, 2),
	    count = kl_get_le(head + 0x38, 2);
	if (size < 56 || phoff + size * count > MAX_KCORE_HEADERS)
		kl_fail(path, ": byte 0x20: program headers out of reach (not a kcore header)", 0, 0);
	u8 *table = kl_alloc(size * count + 1);
	if (kl_read_at(path, table, size * count, phoff) < size * count)
		kl_fail(path, ": program headers cut short", 0, 0);
	int n = 0;
	for (u64 i = 0; i < count && n < max; i++) {
		const u8 *ph = table + i * size;
		if (kl_get_le(ph, 4) != 1 || kl_get_le(ph + 24, 8) == NO_PADDR)
			continue;
		loads[n][0] = kl_get_le(ph + 16, 8);
		loads[n][1] = kl_get_le(ph + 24, 8);
		loads[n][2] = kl_get_le(ph + 40, 8);
		n++;
	}
	return n;
}

static void text_in_window(const struct kl_plan *plan, u64 (*loads)[3], int n,
			   struct kl_crashinfo *info)
{
	int have_offset = 0;
	for (int i = 0; i < n; i++) {
		u64 vaddr = loads[i][0], paddr = loads[i][1];
		if (plan->text_window[0] <= vaddr && vaddr < plan->text_window[1]) {
			if (!info->have_text) {
				info->have_text = 1;
				info->text_vaddr = vaddr, info->text_paddr = paddr;
				info->text_size = loads[i][2];
			}
		} else if (!have_offset && vaddr >= paddr) {
			have_offset = 1;
			info->page_offset = vaddr - paddr;
		}
	}
}

/* arm64, riscv64: the highest mapped PT_LOAD is the kernel image; the rest share an offset. */
static void text_above_linear_map(const char *path, u64 (*loads)[3], int n,
				  struct kl_crashinfo *info)
{
	if (n < 2)
		kl_fail(path, ": fewer than 2 PT_LOADs with a physical address", 0, 0);
	int top = 0;
	for (int i = 1; i < n; i++)
		if (loads[i][0] > loads[top][0] ||
		    (loads[i][0] == loads[top][0] && (loads[i][1] > loads[top][1] ||
		     (loads[i][1] == loads[top][1] && loads[i][2] > loads[top][2]))))
			top = i;
	info->have_text = 1;
	info->text_vaddr = loads[top][0], info->text_paddr = loads[top][1];
	info->text_size = loads[top][2];
	int have = 0;
	for (int i = 0; i < n; i++) {
		if (i == top)
			continue;
		u64 offset = loads[i][0] - loads[i][1];
		if (have && offset != info->page_offset)
			kl_fail(path, ": the linear map's PT_LOADs disagree on vaddr - paddr", 0, 0);
		have = 1;
		info->page_offset = offset;
	}
}

void kl_read_crashinfo(const char *root, const struct kl_plan *plan, struct kl_crashinfo *info)
{
	static u64 loads[4096][3];
	memset(info, 0, sizeof(*info));
	read_possible(root, info);
	read_notes(root, info);
	read_vmcoreinfo(root, info);
	const char *kcore = root_path(root, "proc/kcore");
	int n = kcore_loads(kcore, plan->elf_machine, loads, 4096);
	if (plan->text_above_linear_map)
		text_above_linear_map(kcore, loads, n, info);
	else
		text_in_window(plan, loads, n, info);
	struct kl_buf params;
	if (kl_read_file(root_path(root, "sys/kernel/boot_params/data"), &params, 1) &&
	    params.len >= 0x78)
		info->acpi_rsdp = kl_get_le(params.data + 0x70, 8);
}
