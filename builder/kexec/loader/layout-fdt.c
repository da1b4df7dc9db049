/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The device-tree architectures' crash layout (aarch64, riscv64;
 * builder/kexec/layout/fdtboot.py, aarch64.py and riscv64.py hold the same
 * rules): the Image at the crash region's aligned base, the initrd after it,
 * the capture device tree after that, the purgatory after the DTB, the ELF
 * core header in the region's last pages. What differs between the two
 * architectures comes from the plan.
 */
#include "fdt.h"
#include "layout.h"

struct fdt_state {
	struct kl_fdt_info fdt;
	struct kl_ranges dump, crash;
	struct kl_range kernel, initrd, elfcorehdr, dtb, purgatory;
	const char *bootargs;
	u8 *core, *blob;
	u64 core_len, blob_len;
};

static u8 *random_bytes(u64 len);

static void dump_ranges(const struct kl_inputs *in, struct fdt_state *s)
{
	static struct kl_ranges reserved;
	kl_system_ram(in->memory, &s->dump);
	kl_subtract(&s->dump, &s->crash);
	if (in->plan->dump_minus_reserved) {
		kl_fdt_firmware_reserved(&in->device_tree, &s->fdt, &reserved);
		kl_subtract(&s->dump, &reserved);
	}
}

static void place(const struct kl_inputs *in, struct fdt_state *s)
{
	const struct kl_plan *plan = in->plan;
	struct kl_range region = s->crash.item[s->crash.count - 1];
	static struct kl_ranges ram;
	u64 base = kl_align_up(region.start, plan->image_base_align);
	kl_system_ram(in->memory, &ram);
	if (!plan->image_anywhere && (!ram.count || base != ram.item[0].start))
		kl_fail(in->plan->kernel.name, ": the Image may only run at the base of RAM (flags "
			"bit 3 clear); it cannot be a capture kernel in the crash region", 0, 0);
	u64 start = base + plan->image_text_offset;
	s->kernel = (struct kl_range){start, start + plan->image_memsz, 0};
	if (!in->initrd.len)
		kl_fail("segment 'initrd': the initrd is empty", 0, 0, 0);
	u64 initrd = kl_align_up(start + plan->initrd_offset, plan->initrd_align);
	s->initrd = (struct kl_range){initrd, initrd + in->initrd.len, 0};
	if (plan->window_size &&
	    s->initrd.end > kl_align_down(start, plan->window_align) + plan->window_size)
		kl_fail("segment 'initrd': leaves the kernel's 32 GiB window", 0, 0, 0);
	u64 core_pages = kl_align_up(s->core_len, KL_PAGE);
	s->elfcorehdr = (struct kl_range){region.end - core_pages, region.end - core_pages + s->core_len, 0};
}

static void device_tree(const struct kl_inputs *in, struct fdt_state *s)
{
	const struct kl_plan *plan = in->plan;
	struct kl_range usable[2];
	int nusable = 0;
	usable[nusable++] = s->crash.item[s->crash.count - 1];
	if (s->crash.count > 2)
		kl_fail(kl_dec_str((u64)s->crash.count), " crash ranges: the capture kernel reads at "
			"most 2 from linux,usable-memory-range", 0, 0);
	if (s->crash.count == 2) /* the main range first, then the other one */
		usable[nusable++] = s->crash.item[0];
	u64 bootargs_len = kl_strlen(s->bootargs) + 1, core_len, usable_len;
	u8 *core = kl_fdt_ranges(&s->fdt, &s->elfcorehdr, 1, &core_len);
	u8 *ranges = kl_fdt_ranges(&s->fdt, usable, nusable, &usable_len);
	u8 *initrd = kl_alloc(16); /* u64 big-endian each, end exclusive */
	for (int i = 0; i < 8; i++) {
		initrd[i] = (u8)(s->initrd.start >> (56 - 8 * i));
		initrd[8 + i] = (u8)(s->initrd.end >> (56 - 8 * i));
	}
	static const u8 empty[1];
	/* drivers/of/kexec.c's order; a dry run leaves the seeds out, as an offline layout does */
	const u8 *kaslr = in->fresh_seeds ? random_bytes(8) : 0;
	const u8 *rng = in->fresh_seeds ? random_bytes(128) : 0;
	const struct kl_chosen_edit edits[KL_CHOSEN_EDITS] = {
		{"bootargs", (const u8 *)s->bootargs, bootargs_len},
		{"linux,elfcorehdr", core, core_len},
		{"linux,usable-memory-range", ranges, usable_len},
		{"linux,initrd-start", initrd, 8},
		{"linux,initrd-end", initrd + 8, 8},
		{"kaslr-seed", kaslr, kaslr ? 8 : 0},
		{"rng-seed", rng, rng ? 128 : 0},
		{"linux,ima-kexec-buffer", 0, 0},
		{"linux,booted-from-kexec", empty, 0},
	};
	s->blob = kl_fdt_capture(&in->device_tree, &s->fdt, edits, KL_CHOSEN_EDITS, &s->blob_len);
	if (s->blob_len > plan->dtb_max)
		kl_fail("segment 'dtb': ", kl_dec_str(s->blob_len), " bytes, the kernel maps at most ",
			kl_dec_str(plan->dtb_max));
	u64 at = kl_align_up(s->initrd.end, KL_PAGE);
	s->dtb = (struct kl_range){at, at + kl_align_up(s->blob_len, KL_PAGE), 0};
}

/* As the kernel's own loader: new randomness for the capture kernel, whose booted DTB
 * holds only a zeroed kaslr-seed and a NOP'd rng-seed (builder/kexec/layout/devicetree.py). */
static u8 *random_bytes(u64 len)
{
	u8 *out = kl_alloc(len);
	for (u64 done = 0; done < len;) {
		long got = kl_sys(SYS_getrandom, (long)(out + done), (long)(len - done), 0, 0, 0, 0);
		if (got == -4)
			continue;
		if (got <= 0)
			kl_fail("getrandom: error ", kl_dec_str((u64)-got), " (fresh seeds for the device tree)", 0);
		done += (u64)got;
	}
	return out;
}

static const char *bootargs(const struct kl_inputs *in)
{
	u64 len = kl_strlen(in->cmdline);
	if (len >= in->plan->bootargs_max)
		kl_fail("bootargs: ", kl_dec_str(len), " bytes, the kernel keeps ",
			kl_dec_str(in->plan->bootargs_max - 1));
	return in->cmdline;
}

void kl_plan_devicetree(const struct kl_inputs *in, struct kl_layout *layout)
{
	static struct fdt_state s;
	const struct kl_plan *plan = in->plan;
	if (!in->device_tree.len)
		kl_fail("the layout needs the device tree the main kernel booted with "
			"(/sys/firmware/fdt)", 0, 0, 0);
	if (!plan->image_as_file)
		kl_fail(plan->kernel.name, ": a compressed Image; kdump-load loads the Image as it is", 0, 0);
	if (in->cma->count)
		kl_fail(kl_dec_str((u64)in->cma->count), " crashkernel=,cma range(s): kdump-build gives "
			"them to the capture kernel through an e820 map only (boot without "
			"crashkernel=,cma here)",
			0, 0);
	kl_fdt_info(&in->device_tree, &s.fdt);
	kl_crash_ranges(in->memory, &s.crash);
	dump_ranges(in, &s);
	s.core = kl_elfcore(in->info, &s.dump, plan->elf_machine, &s.core_len);
	place(in, &s);
	s.bootargs = bootargs(in);
	device_tree(in, &s);
	layout->count = 0;
	layout->region = s.crash.item[s.crash.count - 1];
	layout->flags = plan->kexec_flags;
	struct kl_range initrd_pages = {s.initrd.start, kl_align_up(s.initrd.end, KL_PAGE), 0};
	struct kl_range core_pages = {s.elfcorehdr.start, kl_align_up(s.elfcorehdr.end, KL_PAGE), 0};
	kl_add_segment(layout, "kernel", in->kernel.data, in->kernel.len, s.kernel);
	kl_add_segment(layout, "initrd", in->initrd.data, in->initrd.len, initrd_pages);
	kl_add_segment(layout, "dtb", s.blob, s.blob_len, s.dtb);
	kl_add_segment(layout, "elfcorehdr", s.core, s.core_len, core_pages);
	u64 start = kl_align_up(kl_align_up(s.dtb.start + s.blob_len, KL_PAGE),
				plan->purgatory_align > KL_PAGE ? plan->purgatory_align : KL_PAGE);
	u64 end = start + kl_align_up(plan->purgatory_memsz, KL_PAGE);
	if (end > s.elfcorehdr.start)
		kl_fail("the crash region is too small: kernel, initrd, dtb and purgatory end at ",
			kl_hex_str(end), ", the ELF core header starts at ", kl_hex_str(s.elfcorehdr.start));
	const char *names[] = {plan->dtb_register, "entry"};
	u64 values[] = {s.dtb.start, s.kernel.start};
	kl_add_purgatory(layout, plan, (struct kl_range){start, end, 0}, 2, names, values);
	/* kexec-tools' order: kernel, initrd, dtb, purgatory, elfcorehdr */
	struct kl_segment purgatory = layout->segment[4];
	layout->segment[4] = layout->segment[3];
	layout->segment[3] = purgatory;
}
