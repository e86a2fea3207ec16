/* test_vring.c - split-ring parsing against a fake guest memory table,
 * including rings a malicious guest could write. */
#include <endian.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vring.h"

#include "check.h"

#define GPA   0x100000ull
#define UA    0x7f0000000000ull
#define MEMSZ 0x10000u
#define NUM   8u
/* Ring layout inside the fake memory (offsets). */
#define DESC  0x0000u
#define AVAIL 0x1000u
#define USED  0x2000u
#define DATA  0x4000u

static uint8_t *mem;
static struct vring_mem table;

static void set_desc(unsigned i, uint64_t addr, uint32_t len, uint16_t flags, uint16_t next)
{
	uint8_t *d = mem + DESC + 16 * i;
	uint64_t a = htole64(addr);
	uint32_t l = htole32(len);
	uint16_t f = htole16(flags), n = htole16(next);

	memcpy(d, &a, 8);
	memcpy(d + 8, &l, 4);
	memcpy(d + 12, &f, 2);
	memcpy(d + 14, &n, 2);
}

static uint16_t rd16(unsigned off)
{
	uint16_t v;

	memcpy(&v, mem + off, 2);
	return le16toh(v);
}

static uint32_t rd32(unsigned off)
{
	uint32_t v;

	memcpy(&v, mem + off, 4);
	return le32toh(v);
}

static void wr16(unsigned off, uint16_t v)
{
	v = htole16(v);
	memcpy(mem + off, &v, 2);
}

/* Offer chain @head as the next avail entry. */
static void offer(uint16_t head)
{
	uint16_t idx = rd16(AVAIL + 2);

	wr16(AVAIL + 4 + 2 * (idx % NUM), head);
	wr16(AVAIL + 2, idx + 1);
}

static void fresh(struct vring *vr)
{
	struct fc_err e;

	memset(mem, 0, MEMSZ);
	if (vring_start(vr, &table, NUM, UA + DESC, UA + AVAIL, UA + USED, 0, &e) < 0) {
		printf("not ok - start a fresh ring: %s\n", e.msg);
		exit(1);
	}
}

int main(void)
{
	struct vring vr;
	struct vring_chain *c = calloc(1, sizeof(*c));
	struct fc_err e;
	char buf[64];
	int r;

	mem = aligned_alloc(4096, MEMSZ);
	table.n = 1;
	table.r[0] = (struct vring_region){ .gpa = GPA, .size = MEMSZ, .uaddr = UA, .host = mem };

	/* Address translation bounds. */
	CHECK(vring_gpa(&table, GPA, MEMSZ) == mem, "whole region translates");
	CHECK(vring_gpa(&table, GPA + MEMSZ - 1, 2) == NULL, "range past the end is refused");
	CHECK(vring_gpa(&table, GPA - 1, 1) == NULL, "address below the region is refused");
	CHECK(vring_gpa(&table, GPA + 8, UINT64_MAX) == NULL, "overflowing length is refused");
	CHECK(vring_gpa(&table, GPA, 0) == NULL, "zero length is refused");
	CHECK(vring_uaddr(&table, UA + 16, 16) == mem + 16, "front-end address translates");

	/* Starting a ring. */
	CHECK(vring_start(&vr, &table, 6, UA + DESC, UA + AVAIL, UA + USED, 0, &e) < 0,
	      "non power-of-two size refused");
	CHECK(vring_start(&vr, &table, NUM, UA + DESC + 8, UA + AVAIL, UA + USED, 0, &e) < 0,
	      "misaligned descriptor table refused");
	CHECK(vring_start(&vr, &table, NUM, UA + MEMSZ - 16, UA + AVAIL, UA + USED, 0, &e) < 0,
	      "descriptor table past guest memory refused");
	CHECK(vring_start(&vr, &table, 65536, UA, UA + AVAIL, UA + USED, 0, &e) < 0,
	      "oversized ring refused");
	CHECK(vr.num == 0, "failed start leaves the ring stopped");
	CHECK(vring_pop(&vr, &table, c, &e) == 0, "stopped ring pops nothing");

	/* A well-formed chain: 44 readable bytes then 100 writable. */
	fresh(&vr);
	CHECK(vring_pop(&vr, &table, c, &e) == 0, "empty ring pops nothing");
	set_desc(0, GPA + DATA, 44, 1, 3);
	set_desc(3, GPA + DATA + 64, 100, 2, 0);
	offer(0);
	r = vring_pop(&vr, &table, c, &e);
	CHECK(r == 1 && c->head == 0 && c->n_out == 1 && c->n_in == 1, "chain pops with one out, one in");
	CHECK(c->out[0].iov_base == mem + DATA && c->out_len == 44 && c->in_len == 100,
	      "iovecs point into guest memory with the right lengths");
	vring_push(&vr, c->head, 77);
	CHECK(rd16(USED + 2) == 1 && rd32(USED + 4) == 0 && rd32(USED + 8) == 77,
	      "push writes the used element and index");
	CHECK(vring_needs_interrupt(&vr), "interrupt wanted by default");
	wr16(AVAIL, 1);
	CHECK(!vring_needs_interrupt(&vr), "NO_INTERRUPT honoured");

	/* unpop gives the same chain back. */
	offer(3);
	CHECK(vring_pop(&vr, &table, c, &e) == 1 && c->head == 3, "second chain pops");
	vring_unpop(&vr);
	CHECK(vring_pop(&vr, &table, c, &e) == 1 && c->head == 3, "unpopped chain pops again");

	/* Malicious: buffer outside guest memory. */
	fresh(&vr);
	set_desc(1, GPA + MEMSZ - 10, 20, 0, 0);
	offer(1);
	r = vring_pop(&vr, &table, c, &e);
	CHECK(r == -1 && rd16(USED + 2) == 1 && rd32(USED + 8) == 0,
	      "out-of-range buffer rejected and returned with length 0");
	CHECK(!vr.broken, "a bad chain does not break the ring");

	/* Malicious: descriptor loop. */
	fresh(&vr);
	set_desc(0, GPA + DATA, 8, 1, 1);
	set_desc(1, GPA + DATA, 8, 1, 0);
	offer(0);
	CHECK(vring_pop(&vr, &table, c, &e) == -1, "descriptor loop rejected");

	/* Malicious: oversized length. */
	fresh(&vr);
	set_desc(2, GPA, 0xffffffffu, 0, 0);
	offer(2);
	CHECK(vring_pop(&vr, &table, c, &e) == -1, "4 GiB descriptor rejected");
	fresh(&vr);
	set_desc(0, GPA, MEMSZ, 1, 1);
	set_desc(1, GPA, MEMSZ, 1, 2);
	set_desc(2, GPA, MEMSZ, 1, 3);
	set_desc(3, GPA, MEMSZ, 1, 4);
	set_desc(4, GPA, MEMSZ, 1, 5);
	set_desc(5, GPA, MEMSZ, 1, 6);
	set_desc(6, GPA, MEMSZ, 1, 7);
	set_desc(7, GPA, MEMSZ, 0, 0);
	offer(0);
	CHECK(vring_pop(&vr, &table, c, &e) == 1 && c->out_len == 8 * MEMSZ,
	      "eight in-range descriptors accepted");
	set_desc(7, GPA, MEMSZ, 1, 0);
	offer(0);
	CHECK(vring_pop(&vr, &table, c, &e) == -1, "chain longer than the ring rejected");

	/* Malicious: next index outside the ring, indirect, readable after writable. */
	fresh(&vr);
	set_desc(0, GPA + DATA, 8, 1, 200);
	offer(0);
	CHECK(vring_pop(&vr, &table, c, &e) == -1, "next index outside ring rejected");
	set_desc(0, GPA + DATA, 16, 4, 0);
	offer(0);
	CHECK(vring_pop(&vr, &table, c, &e) == -1, "indirect descriptor rejected");
	set_desc(0, GPA + DATA, 8, 3, 1);
	set_desc(1, GPA + DATA, 8, 0, 0);
	offer(0);
	CHECK(vring_pop(&vr, &table, c, &e) == -1, "readable after writable rejected");

	/* Malicious: head out of range, avail index too far ahead. */
	fresh(&vr);
	offer(NUM + 5);
	CHECK(vring_pop(&vr, &table, c, &e) == -1 && vr.broken, "bad head breaks the ring");
	CHECK(vring_pop(&vr, &table, c, &e) == 0, "broken ring pops nothing");
	fresh(&vr);
	wr16(AVAIL + 2, NUM + 1);
	CHECK(vring_pop(&vr, &table, c, &e) == -1 && vr.broken, "avail index jump breaks the ring");

	/* Start from a base index (as after a vhost-user restart). */
	memset(mem, 0, MEMSZ);
	wr16(USED + 2, 40);
	wr16(AVAIL + 2, 40);
	CHECK(vring_start(&vr, &table, NUM, UA + DESC, UA + AVAIL, UA + USED, 40, &e) == 0 &&
	      vr.used_idx == 40 && vring_pop(&vr, &table, c, &e) == 0,
	      "start at base 40 with nothing available");
	set_desc(5, GPA + DATA, 8, 0, 0);
	wr16(AVAIL + 4 + 2 * (40 % NUM), 5);
	wr16(AVAIL + 2, 41);
	CHECK(vring_pop(&vr, &table, c, &e) == 1 && c->head == 5, "pop after wrap-around base");

	/* iovec helpers across entries. */
	{
		char a[4] = "abcd", b[6] = "efghij";
		struct iovec iov[2] = { { a, 4 }, { b, 6 } }, s[2];
		unsigned k;

		memset(buf, 0, sizeof(buf));
		CHECK(iov_to_buf(iov, 2, 2, buf, 5) == 5 && !memcmp(buf, "cdefg", 5),
		      "iov_to_buf copies across entries from an offset");
		CHECK(iov_from_buf(iov, 2, 3, "XYZ", 3) == 3 && !memcmp(a, "abcX", 4) &&
		      !memcmp(b, "YZ", 2), "iov_from_buf writes across entries");
		k = iov_slice(iov, 2, 4, 100, s, 2);
		CHECK(k == 1 && s[0].iov_base == b && s[0].iov_len == 6,
		      "iov_slice skips a whole entry and clamps");
		k = iov_slice(iov, 2, 1, 5, s, 2);
		CHECK(k == 2 && s[0].iov_len == 3 && s[1].iov_len == 2, "iov_slice spans entries");
	}

	free(c);
	free(mem);
	return check_done();
}
