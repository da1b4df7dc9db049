/* SPDX-License-Identifier: GPL-2.0-only */
#include "plan.h"

#define MAX_WORDS (KL_MAX_FIXUPS + 2)

struct line {
	int number, count;
	const char *word[MAX_WORDS];
	size_t len[MAX_WORDS];
};

static const char *plan_path;
static int plan_line;

static _Noreturn void bad(const char *key, const char *why)
{
	kl_fail(plan_path, kl_join(": line ", kl_dec_str((u64)plan_line), ": "), key, why);
}

static char *dup(const char *s, size_t len)
{
	char *copy = kl_alloc(len + 1);
	memcpy(copy, s, len);
	copy[len] = 0;
	return copy;
}

static u64 number(const struct line *l, int i)
{
	u64 v;
	if (i >= l->count || !kl_parse_hex(l->word[i], l->len[i], &v) ||
	    l->len[i] < 3 || l->word[i][1] != 'x')
		bad(dup(l->word[0], l->len[0]), ": expected a 0x number");
	return v;
}

static int key_is(const struct line *l, const char *key)
{
	return l->len[0] == kl_strlen(key) && !memcmp(l->word[0], key, l->len[0]);
}

static void file_record(const struct line *l, struct kl_file_record *r)
{
	if (l->count != 4 || l->len[3] != 64)
		bad("file", ": expected 'file NAME SIZE SHA256'");
	r->name = dup(l->word[1], l->len[1]);
	r->size = number(l, 2);
	r->sha256 = dup(l->word[3], l->len[3]);
}

static u8 *hex_bytes(const struct line *l, u64 *size)
{
	if (l->count != 2 || l->len[1] % 2)
		bad("purgatory-bytes", ": expected one even run of hex digits");
	u8 *out = kl_alloc(l->len[1] / 2);
	for (size_t i = 0; i < l->len[1]; i += 2) {
		u64 v;
		if (!kl_parse_hex(l->word[1] + i, 2, &v))
			bad("purgatory-bytes", ": not hex");
		out[i / 2] = (u8)v;
	}
	*size = l->len[1] / 2;
	return out;
}

static void symbol(const struct line *l, struct kl_plan *p)
{
	static const char *names[] = {"purgatory_sha256_digest", "purgatory_sha256_regions",
				      "purgatory_entry_regs", "purgatory_backup"};
	u64 *slots[] = {&p->digest_off, &p->regions_off, &p->regs_off, &p->backup_off};
	for (int i = 0; i < 4; i++)
		if (l->count == 3 && l->len[1] == kl_strlen(names[i]) &&
		    !memcmp(l->word[1], names[i], l->len[1])) {
			*slots[i] = number(l, 2);
			return;
		}
	bad("purgatory-symbol", ": unknown symbol");
}

static void list_words(const struct line *l, struct kl_plan *p, int fixups)
{
	for (int i = 1; i < l->count; i++) {
		if (fixups && p->nfixups < KL_MAX_FIXUPS)
			p->fixup[p->nfixups++] = number(l, i);
		else if (!fixups && p->nregs < KL_MAX_REGS)
			p->regs[p->nregs++] = dup(l->word[i], l->len[i]);
		else
			bad(fixups ? "purgatory-fixup64" : "purgatory-registers", ": too many");
	}
}

static void digest_prefix(const struct line *l, struct kl_plan *p)
{
	u64 *sizes[] = {&p->prefix_kernel_bufsz, &p->prefix_kernel_memsz, &p->prefix_initrd_bufsz,
			&p->prefix_initrd_memsz};
	if (l->count != 13)
		bad("digest-prefix", ": expected 4 sizes and 8 state words");
	for (int i = 0; i < 4; i++)
		*sizes[i] = number(l, 1 + i);
	for (int i = 0; i < 8; i++) {
		u64 word = number(l, 5 + i);
		if (word >> 32)
			bad("digest-prefix", ": a state word wider than 32 bits");
		p->prefix_state[i] = (u32)word;
	}
}

static int numeric(const struct line *l, struct kl_plan *p)
{
	static const char *keys[] = {
		"elf-machine", "kexec-flags", "backup", "bzimage-payload-offset", "bzimage-memsz",
		"bzimage-align", "bzimage-min", "bzimage-above-4g", "bzimage-initrd-limit",
		"bzimage-cmdline-max", "purgatory-memsz", "purgatory-align", "purgatory-entry",
		"purgatory-stack-top", "image-memsz", "image-text-offset", "image-base-align",
		"initrd-offset", "initrd-align", "bootargs-max", "dtb-max"};
	u64 backup = 0;
	u64 *slots[] = {&p->elf_machine, &p->kexec_flags, &backup, &p->payload_offset,
			&p->kernel_memsz, &p->kernel_align, &p->kernel_min, &p->above_4g,
			&p->initrd_limit, &p->cmdline_max, &p->purgatory_memsz,
			&p->purgatory_align, &p->purgatory_entry, &p->stack_top, &p->image_memsz,
			&p->image_text_offset, &p->image_base_align, &p->initrd_offset,
			&p->initrd_align, &p->bootargs_max, &p->dtb_max};
	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
		if (key_is(l, keys[i])) {
			if (l->count != 2)
				bad(keys[i], ": expected one value");
			*slots[i] = number(l, 1);
			if (slots[i] == &backup)
				p->backup = backup != 0;
			return 1;
		}
	return 0;
}

static void apply(const struct line *l, struct kl_plan *p)
{
	if (numeric(l, p))
		return;
	if (key_is(l, "arch") && l->count == 2)
		p->arch = dup(l->word[1], l->len[1]);
	else if (key_is(l, "kernel"))
		file_record(l, &p->kernel);
	else if (key_is(l, "initrd"))
		file_record(l, &p->initrd);
	else if (key_is(l, "cmdline"))
		file_record(l, &p->cmdline);
	else if (key_is(l, "kernel-text-window"))
		p->text_window[0] = number(l, 1), p->text_window[1] = number(l, 2);
	else if (key_is(l, "kernel-text-above-linear-map"))
		p->text_above_linear_map = 1;
	else if (key_is(l, "image-flags") && l->count == 4)
		p->image_as_file = number(l, 1) != 0, p->image_anywhere = number(l, 2) != 0,
		p->dump_minus_reserved = number(l, 3) != 0;
	else if (key_is(l, "initrd-window"))
		p->window_align = number(l, 1), p->window_size = number(l, 2);
	else if (key_is(l, "dtb-register") && l->count == 2)
		p->dtb_register = dup(l->word[1], l->len[1]);
	else if (key_is(l, "bzimage-setup-header"))
		p->setup_start = number(l, 1), p->setup_end = number(l, 2);
	else if (key_is(l, "purgatory-bytes"))
		p->purgatory = hex_bytes(l, &p->purgatory_size);
	else if (key_is(l, "purgatory-symbol"))
		symbol(l, p);
	else if (key_is(l, "purgatory-registers"))
		list_words(l, p, 0);
	else if (key_is(l, "purgatory-fixup64"))
		list_words(l, p, 1);
	else if (key_is(l, "digest-prefix"))
		digest_prefix(l, p);
	else
		bad(dup(l->word[0], l->len[0]), ": unknown key (a newer kdump-build? use its kdump-load)");
}

static void split(const char *text, size_t len, struct line *l)
{
	l->count = 0;
	size_t i = 0;
	while (i < len) {
		while (i < len && text[i] == ' ')
			i++;
		if (i == len)
			break;
		if (l->count == MAX_WORDS)
			bad("line", ": too many words");
		l->word[l->count] = text + i;
		while (i < len && text[i] != ' ')
			i++;
		l->len[l->count] = (size_t)(text + i - l->word[l->count]);
		l->count++;
	}
}

void kl_read_plan(const char *path, struct kl_plan *plan)
{
	struct kl_buf file;
	static struct line l;
	kl_read_file(path, &file, 0);
	plan_path = path;
	memset(plan, 0, sizeof(*plan));
	plan->path = path;
	const char *text = (const char *)file.data, *end = text + file.len;
	while (text < end) {
		const char *nl = text;
		while (nl < end && *nl != '\n')
			nl++;
		plan_line++;
		split(text, (size_t)(nl - text), &l);
		text = nl + 1;
		if (!l.count)
			continue;
		if (plan_line == 1) {
			if (!key_is(&l, "kdump-load-plan") || l.count != 2 || l.len[1] != 1 || l.word[1][0] != '1')
				bad("kdump-load-plan", ": not a kdump-load plan of version 1");
			continue;
		}
		apply(&l, plan);
	}
	if (plan_line == 0 || !plan->arch || !plan->purgatory || !plan->kernel.name)
		kl_fail(path, ": incomplete plan (no arch, kernel or purgatory)", 0, 0);
}
