/* SPDX-License-Identifier: GPL-2.0-only */
#include "layout.h"
#include "sha256-fast.h"

void kl_placer_init(struct kl_placer *placer, struct kl_range region, u64 limit)
{
	placer->region = region;
	placer->limit = limit;
	placer->taken.count = 0;
}

struct kl_range kl_place(struct kl_placer *placer, const char *name, u64 size, u64 align,
			 u64 min, u64 max)
{
	u64 start, bytes = kl_align_up(size, KL_PAGE);
	if (align < KL_PAGE)
		align = KL_PAGE;
	if (!max)
		max = placer->limit;
	if (!size || !kl_find_hole(placer->region, &placer->taken, bytes, align, min, max, &start))
		kl_fail("segment '", name, kl_join("': no hole of ", kl_hex_str(bytes), " bytes aligned to "),
			kl_join(kl_hex_str(align), " in the crash region", ""));
	kl_add_range(&placer->taken, start, start + bytes, 0);
	return (struct kl_range){start, start + bytes, 0};
}

void kl_add_segment(struct kl_layout *layout, const char *name, const u8 *data, u64 bufsz,
		    struct kl_range where)
{
	if (layout->count == KL_MAX_SEGMENTS)
		kl_fail("more than 16 segments at '", name, "'", 0);
	layout->segment[layout->count++] =
		(struct kl_segment){name, data, bufsz, where.start, where.end - where.start};
}

#define EHDR 64
#define PHDR 56

u64 kl_elfcore_size(const struct kl_crashinfo *info, const struct kl_ranges *ram)
{
	return EHDR + PHDR * ((u64)info->ncpus + 1 + (u64)info->have_text + (u64)ram->count);
}

static u8 *phdr(u8 *p, u32 type, u32 flags, u64 offset, u64 vaddr, u64 paddr, u64 size)
{
	kl_put_le(p, type, 4);
	kl_put_le(p + 4, flags, 4);
	kl_put_le(p + 8, offset, 8);
	kl_put_le(p + 16, vaddr, 8);
	kl_put_le(p + 24, paddr, 8);
	kl_put_le(p + 32, size, 8);
	kl_put_le(p + 40, size, 8);
	kl_put_le(p + 48, 0, 8);
	return p + PHDR;
}

u8 *kl_elfcore(const struct kl_crashinfo *info, const struct kl_ranges *ram, u64 machine,
	       u64 *size)
{
	/* ELF64 ET_CORE: a PT_NOTE per possible CPU, one for vmcoreinfo, a PT_LOAD
	 * for the kernel text, one per RAM range (builder/kexec/layout/elfcore.py). */
	*size = kl_elfcore_size(info, ram);
	u8 *out = kl_alloc(*size), *p = out + EHDR;
	static const u8 ident[16] = {0x7f, 'E', 'L', 'F', 2, 1, 1, 0};
	memcpy(out, ident, 16);
	kl_put_le(out + 16, 4, 2); /* ET_CORE */
	kl_put_le(out + 18, machine, 2);
	kl_put_le(out + 20, 1, 4);
	kl_put_le(out + 32, EHDR, 8);
	kl_put_le(out + 52, EHDR, 2);
	kl_put_le(out + 54, PHDR, 2);
	kl_put_le(out + 56, (*size - EHDR) / PHDR, 2);
	for (int i = 0; i < info->ncpus; i++)
		p = phdr(p, 4, 0, info->note_addr[i], 0, info->note_addr[i], info->note_size[i]);
	p = phdr(p, 4, 0, info->vmcoreinfo_addr, 0, info->vmcoreinfo_addr, info->vmcoreinfo_size);
	if (info->have_text)
		p = phdr(p, 1, 7, info->text_paddr, info->text_vaddr, info->text_paddr,
			 info->text_size);
	for (int i = 0; i < ram->count; i++) {
		u64 start = ram->item[i].start;
		p = phdr(p, 1, 7, start, info->page_offset ? info->page_offset + start : 0, start,
			 ram->item[i].end - start);
	}
	return out;
}

static int is_segment(const struct kl_segment *s, const char *name, u64 bufsz, u64 memsz)
{
	return kl_streq(s->name, name) && s->bufsz == bufsz && s->memsz == memsz;
}

/* How many leading segments the plan's digest-prefix state already covers (0 or 2). Sound
 * because read_inputs checked the kernel and initrd files against the plan's size and
 * sha256 before any layout, the kernel and initrd segments hold those files' bytes, and
 * the build hashed the same bytes and zeros: the state is the one hashing them here gives. */
static int known_prefix(const struct kl_plan *plan, const struct kl_layout *layout,
			struct sha256_state *state)
{
	const struct kl_segment *s = layout->segment;
	if (!plan->prefix_kernel_memsz || layout->count < 2 ||
	    !is_segment(&s[0], "kernel", plan->prefix_kernel_bufsz, plan->prefix_kernel_memsz) ||
	    !is_segment(&s[1], "initrd", plan->prefix_initrd_bufsz, plan->prefix_initrd_memsz))
		return 0;
	for (int i = 0; i < 8; i++)
		state->h[i] = plan->prefix_state[i];
	state->total_bytes = s[0].memsz + s[1].memsz;
	state->buffered = 0;
	return state->total_bytes % SHA256_BLOCK_SIZE ? 0 : 2;
}

static void digest(const struct kl_plan *plan, const struct kl_layout *layout, u8 *out, u8 *table)
{
	struct sha256_state state;
	int known = known_prefix(plan, layout, &state);
	if (!known)
		sha256_init(&state);
	for (int i = 0; i < layout->count; i++) {
		const struct kl_segment *s = &layout->segment[i];
		/* the purgatory checks memsz bytes: the segment, then the zeros the kernel fills */
		if (i >= known) {
			sha256_update(&state, s->data, s->bufsz);
			sha256_update_zeros(&state, s->memsz - s->bufsz);
		}
		kl_put_le(table + 16 * i, s->mem, 8);
		kl_put_le(table + 16 * i + 8, s->memsz, 8);
	}
	sha256_final(&state, out);
}

void kl_add_purgatory(struct kl_layout *layout, const struct kl_plan *plan, struct kl_range where,
		      int nvalues, const char *const *names, const u64 *values)
{
	u8 *image = kl_alloc(plan->purgatory_size);
	memcpy(image, plan->purgatory, plan->purgatory_size);
	for (int i = 0; i < plan->nfixups; i++) {
		u8 *word = image + plan->fixup[i];
		kl_put_le(word, kl_get_le(word, 8) + where.start, 8);
	}
	/* As patch.py: the region table padded with zeros, unnamed registers zero, no backup. */
	memset(image + plan->regions_off, 0, 16 * KL_MAX_SEGMENTS);
	memset(image + plan->regs_off, 0, 8 * (u64)plan->nregs);
	memset(image + plan->backup_off, 0, 24);
	digest(plan, layout, image + plan->digest_off, image + plan->regions_off);
	for (int r = 0; r < plan->nregs; r++)
		for (int v = 0; v < nvalues; v++)
			if (kl_streq(plan->regs[r], names[v]))
				kl_put_le(image + plan->regs_off + 8 * (u64)r, values[v], 8);
	/* purgatory_backup stays {0, 0, 0}: the plan refuses the backup region for now */
	kl_add_segment(layout, "purgatory", image, plan->purgatory_size, where);
	layout->entry = where.start + plan->purgatory_entry;
}
