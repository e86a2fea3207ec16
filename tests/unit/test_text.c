/* test_text - the sanitiser for untrusted text (lib/text): what passes
 * unchanged, every kind of control and reordering character, and every
 * kind of ill-formed UTF-8, each turned into exactly one '?'.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "text.h"

#include "check.h"

/* text_clean of the whole of @in (@len bytes) equals @want, and
 * text_is_clean agrees with whether anything changed. */
static void expect(const char *in, size_t len, bool newlines, const char *want, const char *what)
{
	char *got = text_clean(in, len, (size_t)-1, newlines);
	bool same = strlen(want) == len && !memcmp(want, in, len);

	if (!CHECK(!strcmp(got, want), what))
		printf("#   got '%s', want '%s'\n", got, want);
	if (!CHECK(text_is_clean(in, len, newlines) == same, "text_is_clean agrees"))
		printf("#   for '%s'\n", want);
	free(got);
}

#define EXPECT(in, nl, want, what) expect((in), sizeof(in) - 1, (nl), (want), (what))

static void test_passes(void)
{
	EXPECT("plain ASCII text, with punctuation: ~!@#$%^&*()", false,
	       "plain ASCII text, with punctuation: ~!@#$%^&*()", "printable ASCII passes");
	EXPECT("gr\xc3\xbc\xc3\x9f dich, \xe2\x82\xac 5, \xf0\x9f\x90\xb3", false,
	       "gr\xc3\xbc\xc3\x9f dich, \xe2\x82\xac 5, \xf0\x9f\x90\xb3",
	       "2-, 3- and 4-byte UTF-8 pass unchanged");
	EXPECT("\xc2\xa0\xef\xbf\xbd\xf4\x8f\xbf\xbf", false, "\xc2\xa0\xef\xbf\xbd\xf4\x8f\xbf\xbf",
	       "U+00A0 (first after C1), U+FFFD, U+10FFFF pass");
	EXPECT("\xe2\x80\x8d\xe2\x80\xa9\xe2\x81\xaa", false, "\xe2\x80\x8d\xe2\x80\xa9\xe2\x81\xaa",
	       "neighbours of the bidi controls (U+200D, U+2029, U+206A) pass");
	EXPECT("", false, "", "empty input gives an empty string");
}

static void test_controls(void)
{
	EXPECT("bad \x1b[31mthing\x07", false, "bad ?[31mthing?", "ESC and BEL become '?'");
	EXPECT("a\nb\tc\rd", true, "a\nb\tc?d", "with newlines: \\n and \\t kept, \\r not");
	EXPECT("a\nb\tc", false, "a?b?c", "without newlines: \\n and \\t become '?'");
	EXPECT("x\x7fy", false, "x?y", "DEL becomes '?'");
	{
		char in[] = "a\0b";
		char *got = text_clean(in, 3, 100, true);

		CHECK(!strcmp(got, "a?b"), "an embedded NUL becomes '?', not the end");
		free(got);
	}
	EXPECT("\xc2\x9b" "31m", false, "?31m", "C1 CSI U+009B (UTF-8) becomes one '?'");
	EXPECT("\xc2\x80\xc2\x9f", false, "??", "U+0080 and U+009F (the C1 range ends)");
	EXPECT("\x9b" "2J", false, "?2J", "a raw 8-bit CSI byte 0x9B becomes '?'");
	EXPECT("user\xe2\x80\xae" "txt.exe", false, "user?txt.exe", "RLO U+202E becomes '?'");
	EXPECT("\xe2\x80\xaa\xe2\x80\xab\xe2\x80\xac\xe2\x80\xad", false, "????",
	       "U+202A..U+202D each become '?'");
	EXPECT("\xe2\x81\xa6\xe2\x81\xa7\xe2\x81\xa8\xe2\x81\xa9", false, "????",
	       "isolates U+2066..U+2069 each become '?'");
	EXPECT("\xe2\x80\x8e\xe2\x80\x8f", false, "??", "LRM U+200E and RLM U+200F become '?'");
}

static void test_malformed(void)
{
	EXPECT("a\x80z", false, "a?z", "a lone continuation byte");
	EXPECT("a\xc3z", false, "a?z", "a lead byte without its continuation: one '?', z kept");
	EXPECT("\xc0\xaf", false, "??", "overlong 2-byte '/' (C0 AF)");
	EXPECT("\xc1\xbf", false, "??", "overlong 2-byte (C1 BF)");
	EXPECT("\xe0\x80\xaf", false, "???", "overlong 3-byte (E0 80 AF)");
	EXPECT("\xf0\x80\x80\xaf", false, "????", "overlong 4-byte (F0 80 80 AF)");
	EXPECT("\xed\xa0\x80", false, "???", "a surrogate (ED A0 80)");
	EXPECT("\xf4\x90\x80\x80", false, "????", "above U+10FFFF (F4 90 80 80)");
	EXPECT("\xf5\xff\xfe", false, "???", "bytes that never occur in UTF-8");
	EXPECT("\xe2\x82z", false, "?z", "a 3-byte sequence cut after 2: one '?'");
	EXPECT("\xe2\x82", false, "?", "a sequence cut by the end of input");
	EXPECT("\xf0\x9f\x90", false, "?", "a 4-byte sequence cut by the end of input");
}

static void test_max(void)
{
	char *got = text_clean("hello world", 11, 5, false);

	CHECK(!strcmp(got, "hello"), "at most max bytes are read");
	free(got);
	got = text_clean("ab\xe2\x82\xac", 5, 4, false);
	CHECK(!strcmp(got, "ab?"), "a cut inside a sequence by max gives '?'");
	free(got);
	got = text_clean("abc", 3, 0, false);
	CHECK(!strcmp(got, ""), "max 0 gives an empty string");
	free(got);
}

/* Every 1-, 2- and 3-byte input: the output is never longer, has no C0,
 * DEL or C1 byte as a code point, and cleaning it again changes nothing. */
static void test_exhaustive(void)
{
	unsigned bad = 0;
	unsigned char in[3];

	for (unsigned v = 0; v < (1u << 24); v += (v < 65536 ? 1 : 7)) {
		in[0] = v >> 16;
		in[1] = v >> 8;
		in[2] = v;
		for (size_t len = 1; len <= 3; len++) {
			char *a = text_clean(in + 3 - len, len, len, true);
			size_t al = strlen(a);
			char *b = text_clean(a, al, al, true);

			if (al > len || strcmp(a, b) || !text_is_clean(a, al, true))
				bad++;
			for (size_t i = 0; i < al; i++) {
				unsigned char c = a[i];

				if ((c < 0x20 && c != '\n' && c != '\t') || c == 0x7f)
					bad++;
				if (c == 0xc2 && i + 1 < al && (unsigned char)a[i + 1] <= 0x9f)
					bad++;
			}
			free(a);
			free(b);
		}
	}
	CHECK(bad == 0, "exhaustive short inputs: clean output, idempotent, never longer");
}

int main(void)
{
	test_passes();
	test_controls();
	test_malformed();
	test_max();
	test_exhaustive();
	return check_done();
}
