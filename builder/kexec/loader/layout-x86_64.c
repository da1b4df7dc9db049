/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * x86_64 crash layout (builder/kexec/layout/x86_64.py and zeropage.py hold the
 * same rules): top-down in the crash region, elfcorehdr, purgatory,
 * boot_params, cmdline, kernel, initrd; the capture kernel's e820 map; the
 * zero page from the bzImage's setup header.
 */
#include "layout.h"

#define ONE_MIB (1ULL << 20)
#define FOUR_GIB (1ULL << 32)
#define ZERO_PAGE 4096
#define E820_MAX_ZEROPAGE 128

struct x86_state {
	struct kl_placer placer;
	struct kl_ranges ram, e820;
	struct kl_range elfcorehdr, purgatory, params, cmdline, kernel, initrd;
	char *command;
};

static void dump_ram(const struct kl_inputs *in, struct kl_ranges *ram)
{
	/* System RAM minus the crash and ,cma ranges minus the low 1 MiB (reserved since v5.5). */
	static struct kl_ranges holes;
	kl_system_ram(in->memory, ram);
	kl_crash_ranges(in->memory, &holes);
	kl_subtract(ram, &holes);
	kl_subtract(ram, in->cma);
	holes.count = 0;
	kl_add_range(&holes, 0, ONE_MIB, 0);
	kl_subtract(ram, &holes);
}

static void capture_e820(const struct kl_memmap *memory, const struct kl_ranges *cma,
			 struct kl_range elfcorehdr, struct kl_ranges *out)
{
	static struct kl_ranges list, crash, excluded;
	kl_system_ram(memory, &list);
	out->count = 0;
	for (int i = 0; i < list.count; i++)
		if (list.item[i].start < ONE_MIB)
			kl_add_range(out, list.item[i].start,
				     list.item[i].end < ONE_MIB ? list.item[i].end : ONE_MIB, 1);
	kl_firmware_regions(memory, &list);
	for (int i = 0; i < list.count; i++)
		kl_add_range(out, list.item[i].start, list.item[i].end, list.item[i].type);
	kl_crash_ranges(memory, &crash);
	if (crash.count > 1)
		kl_add_range(out, crash.item[0].start, crash.item[0].end, 1);
	list.count = 0;
	kl_add_range(&list, crash.item[crash.count - 1].start, crash.item[crash.count - 1].end, 1);
	excluded.count = 0;
	kl_add_range(&excluded, elfcorehdr.start, elfcorehdr.end, 0);
	kl_subtract(&list, &excluded);
	for (int i = 0; i < list.count; i++)
		kl_add_range(out, list.item[i].start, list.item[i].end, 1);
	for (int i = 0; i < cma->count; i++) /* ,cma: RAM for the capture kernel too */
		kl_add_range(out, cma->item[i].start, cma->item[i].end, 1);
	kl_sort_ranges(out);
	for (int i = 1; i < out->count; i++)
		if (out->item[i].start < out->item[i - 1].end)
			kl_fail_hex("capture memory map: ", "range at ", out->item[i].start,
				    " overlaps the one before it");
}

static u64 params_size(int entries)
{
	int rest = entries > E820_MAX_ZEROPAGE ? entries - E820_MAX_ZEROPAGE : 0;
	return rest ? ZERO_PAGE + 16 + 20 * (u64)rest : ZERO_PAGE;
}

static char *capture_cmdline(const struct kl_inputs *in, u64 elfcorehdr)
{
	const char *option = elfcorehdr % 1024
		? kl_join("elfcorehdr=", kl_hex_str(elfcorehdr), "")
		: kl_join("elfcorehdr=", kl_dec_str(elfcorehdr >> 10), "K");
	char *text = in->cmdline[0] ? kl_join(in->cmdline, " ", option) : kl_join(option, "", "");
	if (kl_strlen(text) > in->plan->cmdline_max)
		kl_fail("segment 'cmdline': ", kl_dec_str(kl_strlen(text)),
			" bytes, the kernel accepts ", kl_dec_str(in->plan->cmdline_max));
	return text;
}

static void place(const struct kl_inputs *in, struct x86_state *s)
{
	const struct kl_plan *plan = in->plan;
	struct kl_placer *placer = &s->placer;
	static struct kl_ranges crash;
	kl_crash_ranges(in->memory, &crash);
	struct kl_range region = crash.item[crash.count - 1];
	u64 low_limit = plan->above_4g || region.end < FOUR_GIB ? region.end : FOUR_GIB;
	kl_placer_init(placer, region, low_limit);
	dump_ram(in, &s->ram);
	s->elfcorehdr = kl_place(placer, "elfcorehdr", kl_elfcore_size(in->info, &s->ram), 0, 0, 0);
	s->purgatory = kl_place(placer, "purgatory", plan->purgatory_memsz, plan->purgatory_align,
				0, 0);
	capture_e820(in->memory, in->cma, s->elfcorehdr, &s->e820);
	s->params = kl_place(placer, "boot_params", params_size(s->e820.count), 0, 0, 0);
	s->command = capture_cmdline(in, s->elfcorehdr.start);
	s->cmdline = kl_place(placer, "cmdline", kl_strlen(s->command) + 1, 0, 0, 0);
	s->kernel = kl_place(placer, "kernel", plan->kernel_memsz, plan->kernel_align,
			     plan->kernel_min, 0);
	u64 initrd_limit = plan->above_4g || region.end < plan->initrd_limit ? region.end
									      : plan->initrd_limit;
	if (!in->initrd.len)
		kl_fail("segment 'initrd': the initrd is empty", 0, 0, 0);
	s->initrd = kl_place(placer, "initrd", in->initrd.len, 0, 0, initrd_limit);
}

static void put_e820(u8 *p, const struct kl_range *r)
{
	kl_put_le(p, r->start, 8);
	kl_put_le(p + 8, r->end - r->start, 8);
	kl_put_le(p + 16, (u64)r->type, 4);
}

static u8 *zero_page(const struct kl_inputs *in, const struct x86_state *s, u64 *size)
{
	const struct kl_plan *plan = in->plan;
	*size = params_size(s->e820.count);
	u8 *page = kl_alloc(*size);
	memcpy(page + plan->setup_start, in->kernel.data + plan->setup_start,
	       plan->setup_end - plan->setup_start);
	u64 initrd_size = in->initrd.len;
	page[0x210] = 0xD0; /* type_of_loader: kexec */
	page[0x211] = 0;    /* loadflags: nothing applies to the 64-bit entry */
	kl_put_le(page + 0x218, s->initrd.start & 0xffffffff, 4);
	kl_put_le(page + 0x21c, initrd_size & 0xffffffff, 4);
	kl_put_le(page + 0x0c0, s->initrd.start >> 32, 4);
	kl_put_le(page + 0x0c4, initrd_size >> 32, 4);
	kl_put_le(page + 0x228, s->cmdline.start & 0xffffffff, 4);
	kl_put_le(page + 0x0c8, s->cmdline.start >> 32, 4);
	kl_put_le(page + 0x070, in->info->acpi_rsdp, 8);
	int in_page = s->e820.count < E820_MAX_ZEROPAGE ? s->e820.count : E820_MAX_ZEROPAGE;
	page[0x1e8] = (u8)in_page;
	for (int i = 0; i < in_page; i++)
		put_e820(page + 0x2d0 + 20 * i, &s->e820.item[i]);
	kl_put_le(page + 0x250, 0, 8);
	if (s->e820.count > E820_MAX_ZEROPAGE) {
		int rest = s->e820.count - E820_MAX_ZEROPAGE;
		kl_put_le(page + 0x250, s->params.start + ZERO_PAGE, 8); /* SETUP_E820_EXT */
		kl_put_le(page + ZERO_PAGE + 8, 1, 4);
		kl_put_le(page + ZERO_PAGE + 12, 20 * (u64)rest, 4);
		for (int i = 0; i < rest; i++)
			put_e820(page + ZERO_PAGE + 16 + 20 * i, &s->e820.item[E820_MAX_ZEROPAGE + i]);
	}
	return page;
}

void kl_plan_x86_64(const struct kl_inputs *in, struct kl_layout *layout)
{
	static struct x86_state s;
	const struct kl_plan *plan = in->plan;
	place(in, &s);
	u64 params_len, core_len;
	u8 *params = zero_page(in, &s, &params_len);
	u8 *core = kl_elfcore(in->info, &s.ram, plan->elf_machine, &core_len);
	layout->count = 0;
	layout->region = s.placer.region;
	layout->flags = plan->kexec_flags;
	kl_add_segment(layout, "kernel", in->kernel.data + plan->payload_offset,
		       in->kernel.len - plan->payload_offset, s.kernel);
	kl_add_segment(layout, "initrd", in->initrd.data, in->initrd.len, s.initrd);
	kl_add_segment(layout, "boot_params", params, params_len, s.params);
	kl_add_segment(layout, "cmdline", (const u8 *)s.command, kl_strlen(s.command) + 1,
		       s.cmdline);
	kl_add_segment(layout, "elfcorehdr", core, core_len, s.elfcorehdr);
	static const char *const names[] = {"rip", "rsi", "rsp"};
	u64 values[] = {s.kernel.start + 0x200, s.params.start, s.purgatory.start + plan->stack_top};
	kl_add_purgatory(layout, plan, s.purgatory, 3, names, values);
}
