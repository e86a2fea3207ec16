/* test_kernel_extract - lib/kimage: payload candidates in a bzImage, the
 * vmlinux ELF check (PVH note) and module .modinfo parsing, on crafted
 * buffers including truncated and lying headers.
 */
#include <elf.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kimage.h"
#include "util.h"

#include "check.h"

static void put32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
	p[2] = (uint8_t)(v >> 16);
	p[3] = (uint8_t)(v >> 24);
}

static void test_payloads(void)
{
	static const uint8_t gz[] = { 0x1f, 0x8b, 0x08, 0x00 };
	static const uint8_t xz[] = { 0xfd, '7', 'z', 'X', 'Z', 0x00 };
	static const uint8_t lz4[] = { 0x02, 0x21, 0x4c, 0x18 };
	static const uint8_t zst[] = { 0x28, 0xb5, 0x2f, 0xfd };
	struct kimage_cand c[8];
	size_t len = 8192, n;
	uint8_t *img = xcalloc(1, len);

	/* setup header: 1 setup sector -> protected-mode code at 1024; payload at +3000 */
	memcpy(img + 0x202, "HdrS", 4);
	img[0x1f1] = 1;
	put32(img + 0x248, 3000);
	memcpy(img + 1024 + 3000, gz, sizeof(gz));
	memcpy(img + 2000, xz, sizeof(xz));		/* a decoy before the real payload */
	n = kimage_find_payloads(img, len, c, ARRAY_SIZE(c));
	CHECK(n == 2, "header payload and one decoy found");
	CHECK(n >= 1 && c[0].off == 4024 && c[0].fmt == KFMT_GZIP, "setup-header payload comes first");
	CHECK(n >= 2 && c[1].off == 2000 && c[1].fmt == KFMT_XZ, "then magic matches in file order");

	/* header pointing at garbage: only the scan results remain */
	put32(img + 0x248, 100);
	n = kimage_find_payloads(img, len, c, ARRAY_SIZE(c));
	CHECK(n == 2 && c[0].off == 2000 && c[1].off == 4024, "bogus payload_offset ignored");

	/* payload_offset beyond the file must not be followed */
	put32(img + 0x248, 0xfffffff0u);
	n = kimage_find_payloads(img, len, c, ARRAY_SIZE(c));
	CHECK(n == 2, "out-of-range payload_offset ignored");

	/* no header at all: lz4 legacy and zstd found by scanning */
	memset(img, 0, len);
	memcpy(img + 100, lz4, sizeof(lz4));
	memcpy(img + 700, zst, sizeof(zst));
	n = kimage_find_payloads(img, len, c, ARRAY_SIZE(c));
	CHECK(n == 2 && c[0].fmt == KFMT_LZ4 && c[0].off == 100 && c[1].fmt == KFMT_ZSTD,
	      "lz4 (Debian 6.1) and zstd magics found without a header");

	/* a magic cut off by the end of the buffer is not a candidate */
	memset(img, 0, len);
	memcpy(img + len - 3, xz, 3);
	n = kimage_find_payloads(img, len, c, ARRAY_SIZE(c));
	CHECK(n == 0, "truncated magic at the end is not a candidate");

	/* capacity is respected */
	memset(img, 0, len);
	for (size_t i = 0; i < 20; i++)
		memcpy(img + 64 * i, zst, sizeof(zst));
	n = kimage_find_payloads(img, len, c, 3);
	CHECK(n == 3, "no more candidates than the capacity");
	CHECK(kimage_find_payloads(img, 10, c, 0) == 0, "zero capacity");
	CHECK(!strcmp(kimage_fmt_name(KFMT_LZ4), "lz4") && !strcmp(kimage_fmt_argv(KFMT_XZ)[0], "xz"),
	      "format names and decompressor argv");
	free(img);
}

/* A minimal ELF64 executable: header, @nph program headers, one PT_NOTE. */
static size_t make_elf(uint8_t *buf, size_t cap, uint16_t machine, bool pvh_note)
{
	Elf64_Ehdr eh = { 0 };
	Elf64_Phdr ph[2] = { 0 };
	Elf64_Nhdr nh = { .n_namesz = 4, .n_descsz = 4, .n_type = pvh_note ? 18 : 1 };
	size_t off = sizeof(eh) + sizeof(ph);
	uint8_t desc[4];

	memset(buf, 0, cap);
	memcpy(eh.e_ident, ELFMAG, SELFMAG);
	eh.e_ident[EI_CLASS] = ELFCLASS64;
	eh.e_ident[EI_DATA] = ELFDATA2LSB;
	eh.e_ident[EI_VERSION] = EV_CURRENT;
	eh.e_type = ET_EXEC;
	eh.e_machine = machine;
	eh.e_entry = 0x1000000;
	eh.e_phoff = sizeof(eh);
	eh.e_phentsize = sizeof(Elf64_Phdr);
	eh.e_phnum = 2;
	eh.e_ehsize = sizeof(eh);
	ph[0].p_type = PT_LOAD;
	ph[0].p_offset = 0;
	ph[0].p_filesz = 64;
	ph[1].p_type = PT_NOTE;
	ph[1].p_offset = off;
	ph[1].p_filesz = sizeof(nh) + 4 + 4;
	memcpy(buf, &eh, sizeof(eh));
	memcpy(buf + sizeof(eh), ph, sizeof(ph));
	memcpy(buf + off, &nh, sizeof(nh));
	memcpy(buf + off + sizeof(nh), "Xen", 4);
	put32(desc, 0x1234560);
	memcpy(buf + off + sizeof(nh) + 4, desc, 4);
	return off + sizeof(nh) + 8;
}

static void test_elf(void)
{
	uint8_t buf[512];
	struct kimage_elf info;
	struct fc_err e;
	size_t len;

	len = make_elf(buf, sizeof(buf), EM_X86_64, true);
	CHECK(kimage_check_elf(buf, len, &info, &e) == 0, "valid x86-64 ELF accepted");
	CHECK(info.pvh && info.pvh_entry == 0x1234560, "PVH entry note found with its address");
	CHECK(info.entry == 0x1000000 && info.nphdr == 2, "entry and program header count");

	len = make_elf(buf, sizeof(buf), EM_X86_64, false);
	CHECK(kimage_check_elf(buf, len, &info, &e) == 0 && !info.pvh, "ELF without PVH note: accepted, pvh false");

	len = make_elf(buf, sizeof(buf), EM_AARCH64, true);
	CHECK(kimage_check_elf(buf, len, &info, &e) < 0 && strstr(e.msg, "x86-64"), "other machine refused");

	len = make_elf(buf, sizeof(buf), EM_X86_64, true);
	CHECK(kimage_check_elf(buf, 100, &info, &e) < 0 && strstr(e.msg, "truncated"),
	      "program headers cut off: refused");
	CHECK(kimage_check_elf(buf, 40, &info, &e) < 0, "shorter than an ELF header: refused");
	buf[EI_CLASS] = ELFCLASS32;
	CHECK(kimage_check_elf(buf, len, &info, &e) < 0 && strstr(e.msg, "64-bit"), "ELF32 refused");
	CHECK(kimage_check_elf((const uint8_t *)"\x1f\x8b\x08 gzip data, not an ELF at all......."
					       "................................................",
			       80, &info, &e) < 0 && strstr(e.msg, "not an ELF"),
	      "compressed junk refused");

	/* a note segment that claims to extend beyond the file */
	len = make_elf(buf, sizeof(buf), EM_X86_64, true);
	{
		Elf64_Phdr ph;

		memcpy(&ph, buf + sizeof(Elf64_Ehdr) + sizeof(ph), sizeof(ph));
		ph.p_filesz = 1 << 20;
		memcpy(buf + sizeof(Elf64_Ehdr) + sizeof(ph), &ph, sizeof(ph));
	}
	CHECK(kimage_check_elf(buf, len, &info, &e) < 0, "segment beyond the file refused");

	/* a note whose name size lies must not be read past the segment */
	len = make_elf(buf, sizeof(buf), EM_X86_64, true);
	{
		size_t off = sizeof(Elf64_Ehdr) + 2 * sizeof(Elf64_Phdr);
		Elf64_Nhdr nh;

		memcpy(&nh, buf + off, sizeof(nh));
		nh.n_namesz = 0xfffffff0u;
		memcpy(buf + off, &nh, sizeof(nh));
	}
	CHECK(kimage_check_elf(buf, len, &info, &e) == 0 && !info.pvh, "lying note size: no PVH, no overread");
}

/* ET_REL with sections: null, .shstrtab, .modinfo(@modinfo, @mlen). */
static size_t make_ko(uint8_t *buf, size_t cap, const char *modinfo, size_t mlen, const char *secname)
{
	Elf64_Ehdr eh = { 0 };
	Elf64_Shdr sh[3] = { 0 };
	char strtab[32] = "";
	size_t off;

	memset(buf, 0, cap);
	memcpy(strtab + 1, ".shstrtab", 10);
	memcpy(strtab + 11, secname, strlen(secname) + 1);
	memcpy(eh.e_ident, ELFMAG, SELFMAG);
	eh.e_ident[EI_CLASS] = ELFCLASS64;
	eh.e_ident[EI_DATA] = ELFDATA2LSB;
	eh.e_type = ET_REL;
	eh.e_machine = EM_X86_64;
	eh.e_shentsize = sizeof(Elf64_Shdr);
	eh.e_shnum = 3;
	eh.e_shstrndx = 1;
	off = sizeof(eh);
	memcpy(buf + off, strtab, sizeof(strtab));
	sh[1].sh_name = 1;
	sh[1].sh_offset = off;
	sh[1].sh_size = sizeof(strtab);
	off += sizeof(strtab);
	memcpy(buf + off, modinfo, mlen);
	sh[2].sh_name = 11;
	sh[2].sh_offset = off;
	sh[2].sh_size = mlen;
	off += mlen;
	off = (off + 7) & ~(size_t)7;
	eh.e_shoff = off;
	memcpy(buf, &eh, sizeof(eh));
	memcpy(buf + off, sh, sizeof(sh));
	return off + sizeof(sh);
}

static void test_modinfo(void)
{
	static const char mi[] = "license=GPL\0depends=virtio,virtio_ring\0name=virtio_blk\0";
	static const char nodeps[] = "license=GPL\0depends=\0name=vsock\0";
	uint8_t buf[1024];
	char out[64];
	struct fc_err e;
	size_t len;

	len = make_ko(buf, sizeof(buf), mi, sizeof(mi) - 1, ".modinfo");
	CHECK(kimage_modinfo_depends(buf, len, out, sizeof(out), &e) == 0 &&
	      !strcmp(out, "virtio,virtio_ring"), "depends= read from .modinfo");
	CHECK(kimage_modinfo_depends(buf, len, out, 5, &e) < 0 && strstr(e.msg, "too long"),
	      "output buffer bound respected");

	len = make_ko(buf, sizeof(buf), nodeps, sizeof(nodeps) - 1, ".modinfo");
	CHECK(kimage_modinfo_depends(buf, len, out, sizeof(out), &e) == 0 && out[0] == '\0',
	      "empty depends= gives an empty list");

	/* depends= as the last string without its terminating NUL */
	len = make_ko(buf, sizeof(buf), "depends=fuse", 12, ".modinfo");
	CHECK(kimage_modinfo_depends(buf, len, out, sizeof(out), &e) == 0 && !strcmp(out, "fuse"),
	      "unterminated last string stays inside the section");

	len = make_ko(buf, sizeof(buf), mi, sizeof(mi) - 1, ".modinfx");
	CHECK(kimage_modinfo_depends(buf, len, out, sizeof(out), &e) < 0 && strstr(e.msg, ".modinfo"),
	      "no .modinfo section: refused");

	len = make_ko(buf, sizeof(buf), mi, sizeof(mi) - 1, ".modinfo");
	CHECK(kimage_modinfo_depends(buf, len - 10, out, sizeof(out), &e) < 0,
	      "section table cut off: refused");
	{
		Elf64_Ehdr eh;

		memcpy(&eh, buf, sizeof(eh));
		eh.e_type = ET_EXEC;
		memcpy(buf, &eh, sizeof(eh));
	}
	CHECK(kimage_modinfo_depends(buf, len, out, sizeof(out), &e) < 0, "an executable is not a module");
}

int main(void)
{
	test_payloads();
	test_elf();
	test_modinfo();
	return check_done();
}
