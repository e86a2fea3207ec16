/* kimage.c - see kimage.h */
#include <elf.h>
#include <string.h>

#include "kimage.h"

static const struct {
	const char *name;
	const uint8_t magic[6];
	size_t mlen;
	const char *argv[3];
} fmts[KFMT_COUNT] = {
	[KFMT_GZIP]  = { "gzip",  { 0x1f, 0x8b, 0x08 }, 3, { "gzip", "-dc", NULL } },
	[KFMT_XZ]    = { "xz",    { 0xfd, '7', 'z', 'X', 'Z', 0x00 }, 6, { "xz", "-dc", NULL } },
	[KFMT_ZSTD]  = { "zstd",  { 0x28, 0xb5, 0x2f, 0xfd }, 4, { "zstd", "-dc", NULL } },
	[KFMT_LZ4]   = { "lz4",   { 0x02, 0x21, 0x4c, 0x18 }, 4, { "lz4", "-dc", NULL } },
	[KFMT_BZIP2] = { "bzip2", { 'B', 'Z', 'h' }, 3, { "bzip2", "-dc", NULL } },
	[KFMT_LZMA]  = { "lzma",  { 0x5d, 0x00, 0x00, 0x00 }, 4, { "lzma", "-dc", NULL } },
};

const char *kimage_fmt_name(enum kimage_fmt f)
{
	return (unsigned)f < KFMT_COUNT ? fmts[f].name : "unknown";
}

const char *const *kimage_fmt_argv(enum kimage_fmt f)
{
	return (unsigned)f < KFMT_COUNT ? fmts[f].argv : NULL;
}

static int magic_at(const uint8_t *img, size_t len, size_t off)
{
	for (int f = 0; f < KFMT_COUNT; f++)
		if (off <= len && len - off >= fmts[f].mlen &&
		    memcmp(img + off, fmts[f].magic, fmts[f].mlen) == 0)
			return f;
	return -1;
}

static uint32_t le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

size_t kimage_find_payloads(const uint8_t *img, size_t len, struct kimage_cand *out, size_t max)
{
	size_t n = 0, hdr_off = (size_t)-1;
	int f;

	if (max == 0)
		return 0;
	/* Boot protocol: "HdrS" at 0x202; setup_sects at 0x1f1 (0 means 4);
	 * payload_offset (0x248) counts from the protected-mode code. */
	if (len >= 0x250 && memcmp(img + 0x202, "HdrS", 4) == 0) {
		size_t sects = img[0x1f1] ? img[0x1f1] : 4;
		size_t pm = (sects + 1) * 512;
		uint32_t poff = le32(img + 0x248);

		if (pm < len && poff < len - pm) {
			f = magic_at(img, len, pm + poff);
			if (f >= 0) {
				hdr_off = pm + poff;
				out[n++] = (struct kimage_cand){ hdr_off, (enum kimage_fmt)f };
			}
		}
	}
	for (size_t off = 0; off < len && n < max; off++) {
		if (off == hdr_off)
			continue;
		f = magic_at(img, len, off);
		if (f >= 0)
			out[n++] = (struct kimage_cand){ off, (enum kimage_fmt)f };
	}
	return n;
}

/* Walk the notes in [p, p+len) looking for Xen's PVH entry note. */
static bool find_pvh_note(const uint8_t *p, size_t len, uint64_t *entry)
{
	while (len >= sizeof(Elf64_Nhdr)) {
		Elf64_Nhdr nh;
		size_t nsz, dsz, total;

		memcpy(&nh, p, sizeof(nh));
		nsz = ((size_t)nh.n_namesz + 3) & ~(size_t)3;
		dsz = ((size_t)nh.n_descsz + 3) & ~(size_t)3;
		if (nh.n_namesz > len || nh.n_descsz > len)
			return false;
		total = sizeof(nh) + nsz + dsz;
		if (total > len)
			return false;
		if (nh.n_namesz == 4 && memcmp(p + sizeof(nh), "Xen", 4) == 0 &&
		    nh.n_type == 18 /* XEN_ELFNOTE_PHYS32_ENTRY */ && nh.n_descsz >= 4) {
			const uint8_t *d = p + sizeof(nh) + nsz;

			*entry = nh.n_descsz >= 8 ? (uint64_t)le32(d) | (uint64_t)le32(d + 4) << 32
						  : le32(d);
			return true;
		}
		p += total;
		len -= total;
	}
	return false;
}

static int elf_header(const uint8_t *buf, size_t len, Elf64_Ehdr *eh, struct fc_err *e)
{
	if (len < sizeof(*eh) || memcmp(buf, ELFMAG, SELFMAG) != 0)
		return fc_err_set(e, 0, "not an ELF file");
	memcpy(eh, buf, sizeof(*eh));
	if (eh->e_ident[EI_CLASS] != ELFCLASS64)
		return fc_err_set(e, 0, "not a 64-bit ELF file");
	if (eh->e_ident[EI_DATA] != ELFDATA2LSB)
		return fc_err_set(e, 0, "not a little-endian ELF file");
	if (eh->e_machine != EM_X86_64)
		return fc_err_set(e, 0, "ELF machine %u is not x86-64", eh->e_machine);
	return 0;
}

int kimage_check_elf(const uint8_t *buf, size_t len, struct kimage_elf *info, struct fc_err *e)
{
	Elf64_Ehdr eh;

	memset(info, 0, sizeof(*info));
	if (elf_header(buf, len, &eh, e) < 0)
		return -1;
	if (eh.e_type != ET_EXEC)
		return fc_err_set(e, 0, "ELF type %u is not an executable", eh.e_type);
	if (eh.e_phentsize != sizeof(Elf64_Phdr) || eh.e_phnum == 0 || eh.e_phnum > 64)
		return fc_err_set(e, 0, "bad ELF program header table (%u entries of %u bytes)",
				  eh.e_phnum, eh.e_phentsize);
	if (eh.e_phoff > len || (len - eh.e_phoff) / sizeof(Elf64_Phdr) < eh.e_phnum)
		return fc_err_set(e, 0, "ELF program headers beyond the end of the file (truncated?)");
	info->entry = eh.e_entry;
	info->nphdr = eh.e_phnum;
	for (unsigned i = 0; i < eh.e_phnum; i++) {
		Elf64_Phdr ph;

		memcpy(&ph, buf + eh.e_phoff + i * sizeof(ph), sizeof(ph));
		if (ph.p_type != PT_LOAD && ph.p_type != PT_NOTE)
			continue;
		if (ph.p_offset > len || ph.p_filesz > len - ph.p_offset)
			return fc_err_set(e, 0, "ELF segment %u beyond the end of the file (truncated?)", i);
		if (ph.p_type == PT_NOTE && !info->pvh)
			info->pvh = find_pvh_note(buf + ph.p_offset, ph.p_filesz, &info->pvh_entry);
	}
	return 0;
}

int kimage_modinfo_depends(const uint8_t *ko, size_t len, char *out, size_t outlen, struct fc_err *e)
{
	Elf64_Ehdr eh;
	Elf64_Shdr sh, strtab;

	if (elf_header(ko, len, &eh, e) < 0)
		return -1;
	if (eh.e_type != ET_REL)
		return fc_err_set(e, 0, "not a relocatable object (kernel module)");
	if (eh.e_shentsize != sizeof(Elf64_Shdr) || eh.e_shoff > len ||
	    (len - eh.e_shoff) / sizeof(Elf64_Shdr) < eh.e_shnum || eh.e_shstrndx >= eh.e_shnum)
		return fc_err_set(e, 0, "bad ELF section header table");
	memcpy(&strtab, ko + eh.e_shoff + eh.e_shstrndx * sizeof(sh), sizeof(sh));
	if (strtab.sh_offset > len || strtab.sh_size > len - strtab.sh_offset)
		return fc_err_set(e, 0, "bad ELF section name table");
	for (unsigned i = 0; i < eh.e_shnum; i++) {
		const char *name;

		memcpy(&sh, ko + eh.e_shoff + i * sizeof(sh), sizeof(sh));
		if (sh.sh_name >= strtab.sh_size)
			continue;
		name = (const char *)ko + strtab.sh_offset + sh.sh_name;
		if (strnlen(name, strtab.sh_size - sh.sh_name) != 8 || memcmp(name, ".modinfo", 8) != 0)
			continue;
		if (sh.sh_offset > len || sh.sh_size > len - sh.sh_offset)
			return fc_err_set(e, 0, ".modinfo beyond the end of the file");
		/* NUL-separated "key=value" strings */
		for (size_t p = 0; p < sh.sh_size;) {
			const char *s = (const char *)ko + sh.sh_offset + p;
			size_t sl = strnlen(s, sh.sh_size - p);

			if (sl >= 8 && memcmp(s, "depends=", 8) == 0) {
				if (sl - 8 >= outlen)
					return fc_err_set(e, 0, "module dependency list too long");
				memcpy(out, s + 8, sl - 8);
				out[sl - 8] = '\0';
				return 0;
			}
			p += sl + 1;
		}
		if (outlen)
			out[0] = '\0';
		return 0;	/* no depends= : no dependencies */
	}
	return fc_err_set(e, 0, "no .modinfo section (not a kernel module?)");
}
