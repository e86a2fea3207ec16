/* test_imgarchive - SHA-256 vectors and image archive validation edge cases:
 * tars are built in memory here, so every damage is exact and repeatable.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "imgarchive.h"
#include "sha256.h"
#include "util.h"

#include "check.h"

/* ---- a minimal in-memory tar writer ---------------------------------- */
struct tarbuf {
	unsigned char *b;
	size_t len;
};

static void tb_raw(struct tarbuf *t, const void *p, size_t n)
{
	t->b = xrealloc(t->b, t->len + n);
	memcpy(t->b + t->len, p, n);
	t->len += n;
}

static void tb_entry(struct tarbuf *t, const char *name, char type, const char *link,
		     const void *data, size_t size)
{
	unsigned char h[512] = { 0 }, pad[512] = { 0 };
	unsigned sum = 0;
	int i;

	snprintf((char *)h, 100, "%s", name);
	memcpy(h + 100, "0000644", 8);
	memcpy(h + 108, "0000000", 8);
	memcpy(h + 116, "0000000", 8);
	{
		char num[32];

		snprintf(num, sizeof(num), "%011llo", (unsigned long long)size & 077777777777ULL);
		memcpy(h + 124, num, 12);
	}
	memcpy(h + 136, "00000000000", 12);
	h[156] = type;
	if (link)
		snprintf((char *)h + 157, 100, "%s", link);
	memcpy(h + 257, "ustar\0" "00", 8);
	memset(h + 148, ' ', 8);
	for (i = 0; i < 512; i++)
		sum += h[i];
	snprintf((char *)h + 148, 8, "%06o", sum);
	tb_raw(t, h, 512);
	if (size) {
		tb_raw(t, data, size);
		tb_raw(t, pad, (512 - size % 512) % 512);
	}
}

static void tb_file(struct tarbuf *t, const char *name, const char *text)
{
	tb_entry(t, name, '0', NULL, text, strlen(text));
}

static void tb_end(struct tarbuf *t)
{
	unsigned char z[1024] = { 0 };

	tb_raw(t, z, sizeof(z));
}

static int tb_fd(const struct tarbuf *t)
{
	int fd = memfd_create("tar", MFD_CLOEXEC);

	if (fd < 0 || write_full(fd, t->b, t->len) < 0) {
		perror("memfd");
		exit(1);
	}
	return fd;
}

static char *hex_of(const char *s)
{
	uint8_t d[SHA256_LEN];
	struct sha256 st;
	char *h = xmalloc(65);

	sha256_init(&st);
	sha256_update(&st, s, strlen(s));
	sha256_final(&st, d);
	sha256_hex(d, h);
	return h;
}

/* An OCI archive with one layer; knobs to damage it. */
struct oci_opts {
	const char *ref;	/* org.opencontainers.image.ref.name */
	const char *containerd;	/* io.containerd.image.name */
	const char *second;	/* a second image in index.json, by this ref.name */
	bool drop_layer, wrong_size, dot_slash, no_index;
};

/* The annotations object for @ref/@containerd ("" when neither). */
static char *annotations(const char *ref, const char *containerd)
{
	if (ref && containerd)
		return xasprintf(",\"annotations\":{\"io.containerd.image.name\":\"%s\","
				 "\"org.opencontainers.image.ref.name\":\"%s\"}", containerd, ref);
	if (ref || containerd)
		return xasprintf(",\"annotations\":{\"%s\":\"%s\"}",
				 ref ? "org.opencontainers.image.ref.name" : "io.containerd.image.name",
				 ref ? ref : containerd);
	return xstrdup("");
}

static struct tarbuf make_oci(const struct oci_opts *o)
{
	struct tarbuf t = { 0 };
	const char *layer = "pretend this is a layer tar";
	const char *config = "{\"architecture\":\"amd64\",\"os\":\"linux\",\"config\":{}}";
	_cleanup_free_ char *lh = hex_of(layer), *ch = hex_of(config);
	_cleanup_free_ char *man = NULL, *mh = NULL, *idx = NULL;
	char *p;
	const char *pre = o->dot_slash ? "./" : "";

	man = xasprintf("{\"schemaVersion\":2,\"config\":{\"digest\":\"sha256:%s\",\"size\":%zu},"
			"\"layers\":[{\"digest\":\"sha256:%s\",\"size\":%zu}]}",
			ch, strlen(config), lh, strlen(layer) + (o->wrong_size ? 1 : 0));
	mh = hex_of(man);
	{
		_cleanup_free_ char *ann = annotations(o->ref, o->containerd);
		_cleanup_free_ char *ann2 = annotations(o->second, NULL);
		_cleanup_free_ char *two = o->second
			? xasprintf(",{\"digest\":\"sha256:%s\",\"size\":%zu%s}", mh, strlen(man), ann2)
			: xstrdup("");

		idx = xasprintf("{\"schemaVersion\":2,\"manifests\":[{\"digest\":\"sha256:%s\",\"size\":%zu%s}%s]}",
				mh, strlen(man), ann, two);
	}
	p = xasprintf("%sblobs/", pre);
	tb_entry(&t, p, '5', NULL, NULL, 0);
	free(p);
	p = xasprintf("%sblobs/sha256/%s", pre, ch);
	tb_file(&t, p, config);
	free(p);
	if (!o->drop_layer) {
		p = xasprintf("%sblobs/sha256/%s", pre, lh);
		tb_file(&t, p, layer);
		free(p);
	}
	p = xasprintf("%sblobs/sha256/%s", pre, mh);
	tb_file(&t, p, man);
	free(p);
	if (!o->no_index) {
		p = xasprintf("%sindex.json", pre);
		tb_file(&t, p, idx);
		free(p);
	}
	tb_file(&t, "oci-layout", "{\"imageLayoutVersion\":\"1.0.0\"}");
	tb_end(&t);
	return t;
}

static int inspect(const struct tarbuf *t, struct img_info *info, struct fc_err *e)
{
	int fd = tb_fd(t);
	int r = img_archive_inspect(fd, info, e);

	close(fd);
	return r;
}

static void test_sha256(void)
{
	_cleanup_free_ char *a = hex_of(""), *b = hex_of("abc");
	_cleanup_free_ char *c = hex_of("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq");
	char big[1001], h[65];
	uint8_t d[SHA256_LEN];
	struct sha256 s;
	int i;

	CHECK(!strcmp(a, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"), "sha256 of empty input");
	CHECK(!strcmp(b, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"), "sha256 of 'abc'");
	CHECK(!strcmp(c, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"), "sha256 of the 448-bit vector");
	memset(big, 'a', sizeof(big));
	sha256_init(&s);
	for (i = 0; i < 1000; i++)	/* odd chunk sizes exercise the buffer */
		sha256_update(&s, big, i % 2 ? 999 : 1001);
	sha256_final(&s, d);
	sha256_hex(d, h);
	CHECK(!strcmp(h, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0"), "sha256 of a million 'a' in odd chunks");
}

static void test_valid(void)
{
	struct oci_opts o = { .ref = "localhost/x:1" };
	struct tarbuf t = make_oci(&o);
	struct img_info info;
	struct fc_err e = { 0 };
	_cleanup_free_ char *ch = hex_of("{\"architecture\":\"amd64\",\"os\":\"linux\",\"config\":{}}");

	CHECK(inspect(&t, &info, &e) == 0, "valid oci-archive accepted");
	CHECK(info.format == IMG_OCI_ARCHIVE, "format is oci-archive");
	CHECK(info.ref && !strcmp(info.ref, "localhost/x:1"), "ref read from the ref.name annotation");
	CHECK(!strcmp(info.image_id, ch), "image id is the sha256 of the config blob");
	CHECK(info.layers == 1, "one layer counted");
	CHECK(info.tar_size == t.len, "tar size covers the end blocks");
	img_info_free(&info);

	/* trailing zero padding (the .img disk is padded to 512) is fine */
	{
		unsigned char z[300] = { 0 };

		tb_raw(&t, z, sizeof(z));
		CHECK(inspect(&t, &info, &e) == 0, "zero padding after the tar accepted");
		img_info_free(&info);
	}
	free(t.b);

	o = (struct oci_opts){ .dot_slash = true };
	t = make_oci(&o);
	CHECK(inspect(&t, &info, &e) == 0 && info.ref == NULL, "'./' names accepted, no ref when no annotation");
	CHECK(!strcmp(info.image_id, ch), "an unnamed image still has its id");
	img_info_free(&info);
	free(t.b);

	/* skopeo's oci-archive:x.tar:latest: a bare tag in ref.name, the
	 * full name (if any) in containerd's annotation */
	o = (struct oci_opts){ .ref = "latest", .containerd = "docker.io/library/busybox:latest" };
	t = make_oci(&o);
	CHECK(inspect(&t, &info, &e) == 0 && info.ref &&
	      !strcmp(info.ref, "docker.io/library/busybox:latest"),
	      "containerd's full name preferred over a bare-tag ref.name");
	CHECK(!strcmp(info.image_id, ch), "tag-only archive: the id is the config's hash");
	img_info_free(&info);
	free(t.b);

	/* names are only shown: anything is accepted, controls neutralised */
	o = (struct oci_opts){ .ref = "bad name\\u001b[2J\\u009b31m\\u202e" };
	t = make_oci(&o);
	CHECK(inspect(&t, &info, &e) == 0 && info.ref && !strcmp(info.ref, "bad name?[2J?31m?"),
	      "a name with spaces, ESC, C1 CSI and a bidi override: accepted, sanitised");
	if (info.ref && strcmp(info.ref, "bad name?[2J?31m?"))
		printf("#   got: %s\n", info.ref);
	img_info_free(&info);
	free(t.b);
}

static void expect_fail(const struct tarbuf *t, const char *needle, const char *what)
{
	struct img_info info;
	struct fc_err e = { 0 };
	char buf[256];
	int r = inspect(t, &info, &e);

	snprintf(buf, sizeof(buf), "%s -> error containing '%s'", what, needle);
	if (!CHECK(r < 0 && strstr(e.msg, needle), buf) && r < 0)
		printf("#   got: %s\n", e.msg);
}

static void test_damage(void)
{
	struct oci_opts o = { .ref = "localhost/x:1" };
	struct tarbuf t = make_oci(&o), u;

	/* empty file, garbage, short */
	u = (struct tarbuf){ 0 };
	expect_fail(&u, "not a tar archive", "empty file");
	tb_raw(&u, "hello world", 11);
	expect_fail(&u, "not a tar archive", "11 bytes of text");
	free(u.b);
	u = (struct tarbuf){ 0 };
	{
		char junk[2048];

		memset(junk, 'x', sizeof(junk));
		tb_raw(&u, junk, sizeof(junk));
	}
	expect_fail(&u, "not a tar archive", "2 KiB of junk");
	free(u.b);

	/* truncated at every interesting place */
	u = (struct tarbuf){ .b = xmalloc(t.len), .len = t.len / 2 + 100 };
	memcpy(u.b, t.b, u.len);
	expect_fail(&u, "truncated", "archive cut mid-way");
	u.len = 512 + 10;
	expect_fail(&u, "truncated", "archive cut inside the second header");

	/* bit flip in a header -> checksum */
	memcpy(u.b, t.b, t.len);
	u.len = t.len;
	u.b[512 + 3] ^= 1;
	expect_fail(&u, "checksum", "flipped bit in a header");
	/* a non-zero block after an empty one */
	memcpy(u.b, t.b, t.len);
	memset(u.b + 512, 0, 512);
	expect_fail(&u, "after an empty header", "zeroed header followed by data");
	free(u.b);
	free(t.b);

	o = (struct oci_opts){ .no_index = true };
	t = make_oci(&o);
	expect_fail(&t, "no index.json", "tar without index.json or manifest.json");
	free(t.b);

	o = (struct oci_opts){ .drop_layer = true };
	t = make_oci(&o);
	expect_fail(&t, "missing from the archive", "layer blob missing");
	free(t.b);

	o = (struct oci_opts){ .wrong_size = true };
	t = make_oci(&o);
	expect_fail(&t, "descriptor says", "layer size differs from its descriptor");
	free(t.b);

	o = (struct oci_opts){ .ref = "localhost/a:1", .second = "localhost/b:2" };
	t = make_oci(&o);
	expect_fail(&t, "holds 2 images ('localhost/a:1', 'localhost/b:2')",
		    "oci-archive of two images: refused, both named");
	expect_fail(&t, "skopeo copy oci-archive:ARCHIVE:NAME", "... and says how to pick one");
	free(t.b);
	o = (struct oci_opts){ .second = "\\u001b]0;owned\\u0007b" };
	t = make_oci(&o);
	expect_fail(&t, "('(no name)', '?]0;owned?b')",
		    "names in the many-images error are sanitised, a missing one said so");
	free(t.b);

	t = (struct tarbuf){ 0 };
	tb_file(&t, "index.json", "{\"manifests\":[");
	tb_end(&t);
	expect_fail(&t, "invalid JSON", "index.json that is not JSON");
	free(t.b);

	t = (struct tarbuf){ 0 };
	tb_file(&t, "index.json", "{\"manifests\":[{\"digest\":\"md5:abc\"}]}");
	tb_end(&t);
	expect_fail(&t, "unsupported digest", "non-sha256 digest");
	free(t.b);

	t = (struct tarbuf){ 0 };
	tb_file(&t, "index.json", "{\"manifests\":[]}");
	tb_end(&t);
	expect_fail(&t, "no manifests", "empty manifests list");
	free(t.b);

	t = (struct tarbuf){ 0 };
	tb_end(&t);
	expect_fail(&t, "empty tar", "tar with no entries");
	free(t.b);

	/* an oversized index.json is refused before it is read */
	t = (struct tarbuf){ 0 };
	{
		size_t n = IMG_MAX_JSON + 1;
		char *big = xmalloc(n);

		memset(big, ' ', n);
		tb_entry(&t, "index.json", '0', NULL, big, n);
		free(big);
	}
	tb_end(&t);
	expect_fail(&t, "limit", "index.json over the size limit");
	free(t.b);
}

static void test_docker(void)
{
	const char *config = "{\"os\":\"linux\"}";
	_cleanup_free_ char *ch = hex_of(config), *cfgname = xasprintf("%s.json", ch);
	_cleanup_free_ char *man = xasprintf("[{\"Config\":\"%s\",\"RepoTags\":[\"localhost/d:2\"],"
					     "\"Layers\":[\"abc/layer.tar\"]}]", cfgname);
	struct tarbuf t = { 0 };
	struct img_info info;
	struct fc_err e = { 0 };

	tb_file(&t, "l1.tar", "layer bytes");
	tb_file(&t, cfgname, config);
	tb_entry(&t, "abc/layer.tar", '2', "../l1.tar", NULL, 0);
	tb_file(&t, "manifest.json", man);
	tb_end(&t);
	CHECK(inspect(&t, &info, &e) == 0, "docker-archive with a symlinked layer accepted");
	CHECK(info.format == IMG_DOCKER_ARCHIVE, "format is docker-archive");
	CHECK(info.ref && !strcmp(info.ref, "localhost/d:2"), "ref from RepoTags[0]");
	CHECK(!strcmp(info.image_id, ch), "docker-archive image id is the config hash");
	img_info_free(&info);
	free(t.b);

	t = (struct tarbuf){ 0 };
	tb_file(&t, cfgname, config);
	tb_entry(&t, "abc/layer.tar", '2', "../nowhere.tar", NULL, 0);
	tb_file(&t, "manifest.json", man);
	tb_end(&t);
	expect_fail(&t, "layer 'abc/layer.tar' missing", "docker-archive with a dangling layer symlink");
	free(t.b);

	/* archive-derived names in errors are sanitised */
	{
		_cleanup_free_ char *evil = xasprintf("[{\"Config\":\"%s\",\"Layers\":[\"x\\u001b[31m.tar\"]}]",
						      cfgname);

		t = (struct tarbuf){ 0 };
		tb_file(&t, cfgname, config);
		tb_file(&t, "manifest.json", evil);
		tb_end(&t);
		expect_fail(&t, "layer 'x?[31m.tar' missing", "an escape in a layer name is not echoed");
		free(t.b);
	}

	/* podman save -m: several images */
	{
		_cleanup_free_ char *two = xasprintf("[{\"Config\":\"%s\",\"RepoTags\":[\"localhost/d:2\"],\"Layers\":[]},"
						     "{\"Config\":\"%s\",\"Layers\":[]}]", cfgname, cfgname);

		t = (struct tarbuf){ 0 };
		tb_file(&t, cfgname, config);
		tb_file(&t, "manifest.json", two);
		tb_end(&t);
		expect_fail(&t, "holds 2 images ('localhost/d:2', '(no name)')", "docker-archive of two images");
		expect_fail(&t, "skopeo copy docker-archive:ARCHIVE:NAME", "... and how to pick one");
		free(t.b);
	}
}

static void test_long_names(void)
{
	struct tarbuf t = { 0 };
	struct tar_index ix;
	struct fc_err e = { 0 };
	char longname[300];
	_cleanup_free_ char *pax = NULL;
	int fd;

	memset(longname, 'n', sizeof(longname) - 1);
	longname[sizeof(longname) - 1] = '\0';
	/* GNU long name */
	tb_entry(&t, "././@LongLink", 'L', NULL, longname, strlen(longname) + 1);
	tb_file(&t, "truncated-name", "x");
	/* pax path */
	pax = xasprintf("%d path=pax/%s\n", (int)(strlen(longname) + 14), longname);
	tb_entry(&t, "PaxHeaders/x", 'x', NULL, pax, strlen(pax));
	tb_file(&t, "short", "y");
	tb_end(&t);
	fd = tb_fd(&t);
	CHECK(tar_scan(fd, t.len, &ix, &e) == 0, "tar with GNU and pax long names scanned");
	CHECK(ix.n == 2, "extended headers are not entries");
	CHECK(ix.n == 2 && !strcmp(ix.ents[0].name, longname), "GNU long name applied");
	{
		_cleanup_free_ char *want = xasprintf("pax/%s", longname);

		CHECK(ix.n == 2 && !strcmp(ix.ents[1].name, want), "pax path applied");
	}
	tar_index_free(&ix);
	close(fd);
	free(t.b);

	/* a pax record whose length lies */
	t = (struct tarbuf){ 0 };
	tb_entry(&t, "PaxHeaders/x", 'x', NULL, "99 path=x\n", 10);
	tb_file(&t, "short", "y");
	tb_end(&t);
	fd = tb_fd(&t);
	CHECK(tar_scan(fd, t.len, &ix, &e) < 0 && strstr(e.msg, "pax"), "lying pax record length rejected");
	close(fd);
	free(t.b);

	/* an entry claiming more bytes than the file has */
	t = (struct tarbuf){ 0 };
	tb_entry(&t, "big", '0', NULL, NULL, 0);
	snprintf((char *)t.b + 124, 12, "%011o", 077777777);
	{
		unsigned sum = 0;
		int i;

		memset(t.b + 148, ' ', 8);
		for (i = 0; i < 512; i++)
			sum += t.b[i];
		snprintf((char *)t.b + 148, 8, "%06o", sum);
	}
	tb_end(&t);
	fd = tb_fd(&t);
	CHECK(tar_scan(fd, t.len, &ix, &e) < 0 && strstr(e.msg, "truncated"), "size larger than the file rejected");
	close(fd);
	free(t.b);
}

int main(void)
{
	test_sha256();
	test_valid();
	test_damage();
	test_docker();
	test_long_names();
	return check_done();
}
