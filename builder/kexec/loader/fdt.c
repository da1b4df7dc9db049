/* SPDX-License-Identifier: GPL-2.0-only */
#include "fdt.h"

#define BEGIN_NODE 1
#define END_NODE 2
#define PROP 3
#define NOP 4
#define END 9

struct blob {
	const char *path;
	const u8 *data;
	u64 len, off_struct, size_struct, off_strings, size_strings, off_rsvmap, boot_cpu;
};

static u64 be(const u8 *p, int bytes)
{
	u64 v = 0;
	for (int i = 0; i < bytes; i++)
		v = (v << 8) | p[i];
	return v;
}

static void put_be(u8 *p, u64 v, int bytes)
{
	for (int i = bytes - 1; i >= 0; i--, v >>= 8)
		p[i] = (u8)v;
}

static _Noreturn void bad(const struct blob *b, u64 at, const char *why)
{
	kl_fail(b->path, ": byte ", kl_hex_str(at), why);
}

static void open_blob(const struct kl_buf *dtb, struct blob *b)
{
	b->path = dtb->path;
	b->data = dtb->data;
	if (dtb->len < 40 || be(dtb->data, 4) != 0xd00dfeed)
		bad(b, 0, ": not a device tree (magic)");
	b->len = be(dtb->data + 4, 4);
	b->off_struct = be(dtb->data + 8, 4);
	b->off_strings = be(dtb->data + 12, 4);
	b->off_rsvmap = be(dtb->data + 16, 4);
	b->boot_cpu = be(dtb->data + 28, 4);
	b->size_strings = be(dtb->data + 32, 4);
	b->size_struct = be(dtb->data + 36, 4);
	if (be(dtb->data + 20, 4) < 17 || be(dtb->data + 24, 4) > 17)
		bad(b, 20, ": only version 17 device trees are read");
	if (b->len > dtb->len || b->off_struct + b->size_struct > b->len ||
	    b->off_strings + b->size_strings > b->len || b->off_rsvmap + 16 > b->len)
		bad(b, 4, ": a block runs past totalsize");
}

/* One walk over the structure block: calls `visit` per token with the depth. */
struct walker {
	const struct blob *b;
	u64 at;
	int depth;
	u32 token;
	const char *name; /* node or property name */
	const u8 *value;
	u64 len;
};

static int next_token(struct walker *w)
{
	const struct blob *b = w->b;
	u64 end = b->off_struct + b->size_struct;
	for (;;) {
		if (w->at + 4 > end)
			bad(b, w->at, ": structure block ends without FDT_END");
		u64 at = w->at;
		w->token = (u32)be(b->data + at, 4);
		w->at += 4;
		if (w->token == NOP)
			continue;
		if (w->token == BEGIN_NODE) {
			w->name = (const char *)b->data + w->at;
			u64 n = 0;
			while (w->at + n < end && b->data[w->at + n])
				n++;
			if (w->at + n >= end)
				bad(b, at, ": node name runs past the block");
			w->at = kl_align_up(w->at + n + 1, 4);
			w->depth++;
		} else if (w->token == END_NODE) {
			w->depth--;
		} else if (w->token == PROP) {
			if (w->at + 8 > end)
				bad(b, at, ": property runs past the block");
			w->len = be(b->data + w->at, 4);
			u64 name = be(b->data + w->at + 4, 4);
			if (name >= b->size_strings || w->at + 8 + w->len > end)
				bad(b, at, ": property runs past its block");
			w->name = (const char *)b->data + b->off_strings + name;
			w->value = b->data + w->at + 8;
			w->at = kl_align_up(w->at + 8 + w->len, 4);
		} else if (w->token != END) {
			bad(b, at, ": unknown structure token");
		}
		return w->token != END;
	}
}

static u64 cells_value(const u8 *value, u64 len)
{
	return len == 4 ? be(value, 4) : len == 8 ? be(value, 8) : 0;
}

void kl_fdt_info(const struct kl_buf *dtb, struct kl_fdt_info *info)
{
	struct blob b;
	open_blob(dtb, &b);
	struct walker w = {&b, b.off_struct, 0, 0, 0, 0, 0};
	int in_chosen = 0, have_start = 0, have_end = 0;
	info->address_cells = info->size_cells = 1; /* the kernel's defaults for the root */
	while (next_token(&w)) {
		if (w.token == BEGIN_NODE)
			in_chosen = w.depth == 2 && kl_streq(w.name, "chosen");
		else if (w.token == END_NODE)
			in_chosen = 0;
		else if (w.token == PROP && w.depth == 1 && kl_streq(w.name, "#address-cells"))
			info->address_cells = cells_value(w.value, w.len);
		else if (w.token == PROP && w.depth == 1 && kl_streq(w.name, "#size-cells"))
			info->size_cells = cells_value(w.value, w.len);
		else if (w.token == PROP && in_chosen && kl_streq(w.name, "linux,initrd-start"))
			info->initrd_start = be(w.value, (int)(w.len > 8 ? 8 : w.len)), have_start = 1;
		else if (w.token == PROP && in_chosen && kl_streq(w.name, "linux,initrd-end"))
			info->initrd_end = be(w.value, (int)(w.len > 8 ? 8 : w.len)), have_end = 1;
	}
	info->have_initrd = have_start && have_end;
}

u8 *kl_fdt_ranges(const struct kl_fdt_info *info, const struct kl_range *ranges, int count,
		  u64 *len)
{
	u64 stride = 4 * (info->address_cells + info->size_cells);
	u8 *out = kl_alloc(stride * (u64)count + 1);
	for (int i = 0; i < count; i++) {
		u64 values[2] = {ranges[i].start, ranges[i].end - ranges[i].start};
		u64 cells[2] = {info->address_cells, info->size_cells};
		u8 *p = out + stride * (u64)i;
		for (int v = 0; v < 2; v++) {
			if (cells[v] < 2 && values[v] >> (32 * cells[v]))
				kl_fail("device tree: ", kl_hex_str(values[v]), " does not fit in ",
					kl_join(kl_dec_str(cells[v]), " cells", ""));
			memset(p, 0, 4 * cells[v]);
			put_be(p + 4 * cells[v] - (cells[v] >= 2 ? 8 : 4 * cells[v]), values[v],
			       cells[v] >= 2 ? 8 : (int)(4 * cells[v]));
			p += 4 * cells[v];
		}
	}
	*len = stride * (u64)count;
	return out;
}

/* The canonical writer: structure and strings blocks. */
struct writer {
	u8 *structure, *strings;
	u64 size, nstrings;
	const char *names[1024];
	u64 offsets[1024];
	int count;
};

static void word(struct writer *w, u64 v)
{
	put_be(w->structure + w->size, v, 4);
	w->size += 4;
}

static void padded(struct writer *w, const void *data, u64 len)
{
	memcpy(w->structure + w->size, data, len);
	memset(w->structure + w->size + len, 0, kl_align_up(len, 4) - len);
	w->size += kl_align_up(len, 4);
}

static u64 name_offset(struct writer *w, const char *name)
{
	for (int i = 0; i < w->count; i++)
		if (kl_streq(w->names[i], name))
			return w->offsets[i];
	if (w->count == 1024)
		kl_fail("device tree: more than 1024 property names", 0, 0, 0);
	u64 n = kl_strlen(name) + 1;
	memcpy(w->strings + w->nstrings, name, n);
	w->names[w->count] = name;
	w->offsets[w->count++] = w->nstrings;
	w->nstrings += n;
	return w->nstrings - n;
}

static void property(struct writer *w, const char *name, const u8 *value, u64 len)
{
	word(w, PROP);
	word(w, len);
	word(w, name_offset(w, name));
	padded(w, value, len);
}

static int edited(const struct kl_chosen_edit *edits, int count, const char *name)
{
	for (int i = 0; i < count; i++)
		if (kl_streq(edits[i].name, name))
			return i;
	return -1;
}

/* The properties a crash boot adds that /chosen did not have, in the edits' order. */
static void added(struct writer *w, const struct kl_chosen_edit *edits, int count,
		  const int *seen)
{
	for (int i = 0; i < count; i++)
		if (!seen[i] && edits[i].value)
			property(w, edits[i].name, edits[i].value, edits[i].len);
}

static void write_structure(const struct blob *b, struct writer *w,
			    const struct kl_chosen_edit *edits, int count)
{
	struct walker t = {b, b->off_struct, 0, 0, 0, 0, 0};
	int seen[KL_CHOSEN_EDITS] = {0}, in_chosen = 0, chosen_found = 0, flushed = 0;
	while (next_token(&t)) {
		if (in_chosen && !flushed && t.token != PROP) {
			added(w, edits, count, seen);
			flushed = 1;
		}
		if (t.token == BEGIN_NODE) {
			in_chosen = t.depth == 2 && kl_streq(t.name, "chosen");
			chosen_found |= in_chosen;
			flushed = !in_chosen;
			word(w, BEGIN_NODE);
			padded(w, t.name, kl_strlen(t.name) + 1);
		} else if (t.token == END_NODE) {
			if (t.depth == 0 && !chosen_found) { /* no /chosen: a new one, last child */
				static const char chosen[] = "chosen";
				word(w, BEGIN_NODE);
				padded(w, chosen, sizeof(chosen));
				added(w, edits, count, seen);
				word(w, END_NODE);
			}
			in_chosen = 0;
			word(w, END_NODE);
		} else {
			int i = in_chosen && t.depth == 2 ? edited(edits, count, t.name) : -1;
			if (i < 0)
				property(w, t.name, t.value, t.len);
			else if ((seen[i] = 1, edits[i].value))
				property(w, t.name, edits[i].value, edits[i].len);
		}
	}
	word(w, END);
}

u8 *kl_fdt_capture(const struct kl_buf *dtb, const struct kl_fdt_info *info,
		   const struct kl_chosen_edit *edits, int count, u64 *size)
{
	struct blob b;
	static struct writer w;
	open_blob(dtb, &b);
	u64 extra = 64;
	for (int i = 0; i < count; i++)
		extra += 16 + kl_align_up(edits[i].len, 4) + kl_strlen(edits[i].name) + 1;
	w.structure = kl_alloc(b.size_struct + extra + 64);
	w.strings = kl_alloc(b.size_strings + extra);
	w.size = w.nstrings = 0;
	w.count = 0;
	write_structure(&b, &w, edits, count);
	u64 nres = 0, res_cap = (b.len - b.off_rsvmap) / 16;
	u8 *res = kl_alloc(b.len - b.off_rsvmap + 16);
	u64 page_end = kl_align_up(info->initrd_end, KL_PAGE);
	for (u64 i = 0; i < res_cap; i++) {
		const u8 *p = b.data + b.off_rsvmap + 16 * i;
		u64 address = be(p, 8), length = be(p + 8, 8);
		if (!address && !length)
			break;
		/* a /memreserve/ of the old initrd (exactly, or to whole pages) goes */
		if (info->have_initrd && address == info->initrd_start &&
		    (length == info->initrd_end - address || length == page_end - address))
			continue;
		memcpy(res + 16 * nres++, p, 16);
	}
	memset(res + 16 * nres++, 0, 16);
	u64 off_struct = 40 + 16 * nres, off_strings = off_struct + w.size;
	*size = off_strings + w.nstrings;
	u8 *out = kl_alloc(*size);
	u64 header[10] = {0xd00dfeed, *size, off_struct, off_strings, 40, 17, 16, b.boot_cpu,
			  w.nstrings, w.size};
	for (int i = 0; i < 10; i++)
		put_be(out + 4 * i, header[i], 4);
	memcpy(out + 40, res, 16 * nres);
	memcpy(out + off_struct, w.structure, w.size);
	memcpy(out + off_strings, w.strings, w.nstrings);
	return out;
}

void kl_fdt_firmware_reserved(const struct kl_buf *dtb, const struct kl_fdt_info *info,
			      struct kl_ranges *out)
{
	struct blob b;
	open_blob(dtb, &b);
	out->count = 0;
	for (u64 at = b.off_rsvmap; at + 16 <= b.len; at += 16) {
		u64 address = be(b.data + at, 8), length = be(b.data + at + 8, 8);
		if (!address && !length)
			break;
		kl_add_range(out, address, address + length, 0);
	}
	struct walker w = {&b, b.off_struct, 0, 0, 0, 0, 0};
	int in_reserved = 0, reusable = 0;
	const u8 *reg = 0;
	u64 reg_len = 0, stride = 4 * (info->address_cells + info->size_cells);
	while (next_token(&w)) {
		if (w.token == BEGIN_NODE && w.depth == 2)
			in_reserved = kl_streq(w.name, "reserved-memory");
		if (w.token == BEGIN_NODE && w.depth == 3)
			reusable = 0, reg = 0;
		if (w.token == PROP && in_reserved && w.depth == 3) {
			if (kl_streq(w.name, "reusable"))
				reusable = 1;
			if (kl_streq(w.name, "reg"))
				reg = w.value, reg_len = w.len;
		}
		if (w.token == END_NODE && in_reserved && w.depth == 2 && reg && !reusable) {
			if (!stride || reg_len % stride)
				bad(&b, w.at, ": /reserved-memory: reg is not whole <address size> pairs");
			for (u64 i = 0; i < reg_len; i += stride) {
				u64 address = be(reg + i, (int)(4 * info->address_cells));
				u64 length = be(reg + i + 4 * info->address_cells, (int)(4 * info->size_cells));
				kl_add_range(out, address, address + length, 0);
			}
			reg = 0;
		}
	}
	int n = 0;
	for (int i = 0; i < out->count; i++)
		if (out->item[i].end > out->item[i].start)
			out->item[n++] = out->item[i];
	out->count = n;
	kl_sort_ranges(out);
}
