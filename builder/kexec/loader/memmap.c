/* SPDX-License-Identifier: GPL-2.0-only */
#include "memmap.h"

static enum kl_kind classify(const char *name, size_t len)
{
	static const struct { const char *name; enum kl_kind kind; } names[] = {
		{"System RAM", KIND_RAM}, {"Crash kernel", KIND_CRASH},
		{"ACPI Tables", KIND_ACPI}, {"ACPI Non-volatile Storage", KIND_NVS},
		{"Reserved", KIND_RESERVED}, {"reserved", KIND_RESERVED},
		{"Kernel code", KIND_KERNEL}, {"Kernel rodata", KIND_KERNEL},
		{"Kernel data", KIND_KERNEL}, {"Kernel bss", KIND_KERNEL},
	};
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (kl_strlen(names[i].name) == len && !memcmp(names[i].name, name, len))
			return names[i].kind;
	if (len >= 17 && !memcmp(name, "Persistent Memory", 17))
		return KIND_PMEM;
	return KIND_OTHER;
}

static _Noreturn void bad_line(const struct kl_buf *file, int number, const char *what)
{
	kl_fail(file->path, ": line ", kl_dec_str((u64)number), what);
}

/* One "  start-end : name" line; returns its indentation. */
static int parse_line(const struct kl_buf *file, int number, const char *line, size_t len,
		      u64 *first, u64 *last, enum kl_kind *kind)
{
	size_t i = 0, dash, colon;
	while (i < len && line[i] == ' ')
		i++;
	int indent = (int)i;
	for (dash = i; dash < len && line[dash] != '-'; dash++)
		;
	for (colon = dash; colon + 2 < len && memcmp(line + colon, " : ", 3); colon++)
		;
	if (dash >= len || colon + 2 >= len || !kl_parse_hex(line + i, dash - i, first) ||
	    !kl_parse_hex(line + dash + 1, colon - dash - 1, last) ||
	    (dash - i > 2 && line[i + 1] == 'x'))
		bad_line(file, number, ": not 'start-end : name'");
	const char *name = line + colon + 3;
	size_t name_len = len - colon - 3;
	kl_trim(&name, &name_len);
	*kind = classify(name, name_len);
	if (*last < *first || *last == ~0ULL)
		bad_line(file, number, ": bad range");
	return indent;
}

void kl_parse_iomem(const struct kl_buf *file, struct kl_memmap *map)
{
	int stack[64], indents[64], depth = 0, number = 0, nonzero = 0;
	const char *text = (const char *)file->data, *end = text + file->len;
	map->count = 0;
	while (text < end) {
		const char *nl = text;
		while (nl < end && *nl != '\n')
			nl++;
		size_t len = (size_t)(nl - text);
		const char *line = text;
		text = nl + 1;
		number++;
		const char *probe = line;
		size_t probe_len = len;
		kl_trim(&probe, &probe_len);
		if (!probe_len)
			continue;
		u64 first, last;
		enum kl_kind kind;
		int indent = parse_line(file, number, line, len, &first, &last, &kind);
		nonzero |= last != 0;
		while (depth && indents[depth - 1] >= indent)
			depth--;
		int parent = depth ? stack[depth - 1] : -1;
		if (parent >= 0 && (first < map->node[parent].start || last + 1 > map->node[parent].end))
			bad_line(file, number, ": lies outside its parent");
		if (map->count == KL_MAX_RANGES || depth == 64)
			bad_line(file, number, ": too many resources");
		int at = map->count++;
		map->node[at].start = first;
		map->node[at].end = last + 1;
		map->node[at].kind = kind;
		map->node[at].parent = parent;
		indents[depth] = indent;
		stack[depth++] = at;
	}
	if (map->count && !nonzero)
		kl_fail(file->path, ": every address is zero; read it as root", 0, 0);
}

static int has_ancestor(const struct kl_memmap *map, int at, int ram, int firmware)
{
	for (int p = map->node[at].parent; p >= 0; p = map->node[p].parent) {
		enum kl_kind kind = map->node[p].kind;
		if (ram && kind == KIND_RAM)
			return 1;
		if (firmware && (kind == KIND_ACPI || kind == KIND_NVS || kind == KIND_RESERVED))
			return 1;
	}
	return 0;
}

void kl_system_ram(const struct kl_memmap *map, struct kl_ranges *out)
{
	out->count = 0;
	for (int i = 0; i < map->count; i++)
		if (map->node[i].kind == KIND_RAM && !has_ancestor(map, i, 1, 0))
			kl_add_range(out, map->node[i].start, map->node[i].end, 1);
	kl_sort_ranges(out);
}

void kl_crash_ranges(const struct kl_memmap *map, struct kl_ranges *out)
{
	out->count = 0;
	for (int i = 0; i < map->count; i++)
		if (map->node[i].kind == KIND_CRASH)
			kl_add_range(out, map->node[i].start, map->node[i].end, 1);
	kl_sort_ranges(out);
}

void kl_firmware_regions(const struct kl_memmap *map, struct kl_ranges *out)
{
	/* e820 types (arch/x86/include/asm/e820/types.h): reserved 2, ACPI 3, NVS 4 */
	out->count = 0;
	for (int i = 0; i < map->count; i++) {
		enum kl_kind kind = map->node[i].kind;
		int type = kind == KIND_ACPI ? 3 : kind == KIND_NVS ? 4 : kind == KIND_RESERVED ? 2 : 0;
		if (type && !has_ancestor(map, i, 1, 1))
			kl_add_range(out, map->node[i].start, map->node[i].end, type);
	}
	kl_sort_ranges(out);
}

void kl_add_range(struct kl_ranges *list, u64 start, u64 end, int type)
{
	if (list->count == KL_MAX_RANGES)
		kl_fail("more than ", kl_dec_str(KL_MAX_RANGES), " memory ranges", 0);
	list->item[list->count++] = (struct kl_range){start, end, type};
}

static int before(const struct kl_range *a, const struct kl_range *b)
{
	return a->start < b->start || (a->start == b->start && a->end < b->end);
}

void kl_sort_ranges(struct kl_ranges *list)
{
	/* Insertion sort, stable: lists are short and mostly in order already. */
	for (int i = 1; i < list->count; i++) {
		struct kl_range item = list->item[i];
		int j = i;
		while (j && before(&item, &list->item[j - 1])) {
			list->item[j] = list->item[j - 1];
			j--;
		}
		list->item[j] = item;
	}
}

static void cut(struct kl_ranges *list, struct kl_range hole)
{
	static struct kl_ranges next;
	next.count = 0;
	for (int i = 0; i < list->count; i++) {
		struct kl_range piece = list->item[i];
		if (!(piece.start < hole.end && hole.start < piece.end)) {
			kl_add_range(&next, piece.start, piece.end, piece.type);
			continue;
		}
		if (piece.start < hole.start)
			kl_add_range(&next, piece.start, hole.start, piece.type);
		if (hole.end < piece.end)
			kl_add_range(&next, hole.end, piece.end, piece.type);
	}
	list->count = 0;
	for (int i = 0; i < next.count; i++)
		if (next.item[i].end > next.item[i].start)
			list->item[list->count++] = next.item[i];
}

void kl_subtract(struct kl_ranges *list, const struct kl_ranges *holes)
{
	static struct kl_ranges sorted;
	kl_sort_ranges(list);
	sorted = *holes;
	kl_sort_ranges(&sorted);
	for (int i = 0; i < sorted.count; i++)
		cut(list, sorted.item[i]);
}

int kl_find_hole(struct kl_range region, const struct kl_ranges *taken, u64 size, u64 align,
		 u64 min, u64 max, u64 *start)
{
	static struct kl_ranges free;
	int found = 0;
	free.count = 0;
	kl_add_range(&free, region.start, region.end, 0);
	kl_subtract(&free, taken);
	for (int i = 0; i < free.count; i++) {
		u64 low = free.item[i].start > min ? free.item[i].start : min;
		u64 high = free.item[i].end < max ? free.item[i].end : max;
		if (high < low || high - low < size)
			continue;
		u64 at = kl_align_down(high - size, align);
		if (at < low)
			continue;
		if (!found || at > *start)
			*start = at;
		found = 1;
	}
	return found;
}
