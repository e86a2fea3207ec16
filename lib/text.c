/* text.c - see text.h.
 *
 * How it works: one walk over the input decodes a UTF-8 sequence at a
 * time, strictly (RFC 3629: no overlong forms, no surrogates, nothing
 * above U+10FFFF). An ill-formed sequence is replaced by one '?' for its
 * maximal valid prefix (the bytes up to the first that cannot continue
 * it), so a stray lead byte never swallows the text after it. A decoded
 * code point is kept byte for byte unless it is one that can steer a
 * terminal or reorder text. Every input byte gives at most one output
 * byte, so the output never needs more room than the input.
 */
#include <stdint.h>
#include <string.h>

#include "text.h"
#include "util.h"

/* Code points that must not reach a terminal as they are. */
static bool cp_unsafe(uint32_t cp, bool newlines)
{
	if (cp < 0x20)
		return !(newlines && (cp == '\n' || cp == '\t'));
	if (cp == 0x7f || (cp >= 0x80 && cp <= 0x9f))
		return true;		/* DEL; C1 controls, among them CSI U+009B */
	return cp == 0x200e || cp == 0x200f ||	/* LRM, RLM */
	       (cp >= 0x202a && cp <= 0x202e) ||	/* embeddings, overrides */
	       (cp >= 0x2066 && cp <= 0x2069);		/* isolates */
}

/* Decode the sequence at @s (@n > 0 bytes available). Returns its length
 * with *@cp set, or 0 when it is ill-formed, with *@bad set to how many
 * bytes the one '?' stands for. */
static size_t utf8_next(const unsigned char *s, size_t n, uint32_t *cp, size_t *bad)
{
	unsigned char c = s[0];
	size_t len, i;
	unsigned char lo = 0x80, hi = 0xbf;	/* range of the second byte */

	if (c < 0x80) {
		*cp = c;
		return 1;
	}
	if (c >= 0xc2 && c <= 0xdf) {
		len = 2;
		*cp = c & 0x1f;
	} else if (c >= 0xe0 && c <= 0xef) {
		len = 3;
		*cp = c & 0x0f;
		if (c == 0xe0)
			lo = 0xa0;	/* overlong */
		else if (c == 0xed)
			hi = 0x9f;	/* surrogates */
	} else if (c >= 0xf0 && c <= 0xf4) {
		len = 4;
		*cp = c & 0x07;
		if (c == 0xf0)
			lo = 0x90;	/* overlong */
		else if (c == 0xf4)
			hi = 0x8f;	/* above U+10FFFF */
	} else {
		*bad = 1;	/* a continuation byte, C0/C1 (overlong) or F5..FF */
		return 0;
	}
	for (i = 1; i < len; i++) {
		unsigned char b;

		if (i >= n) {
			*bad = n;	/* cut short */
			return 0;
		}
		b = s[i];
		if (b < (i == 1 ? lo : 0x80) || b > (i == 1 ? hi : 0xbf)) {
			*bad = i;
			return 0;
		}
		*cp = *cp << 6 | (b & 0x3f);
	}
	return len;
}

/* Walk @n bytes of @s; with @out (room for @n + 1 bytes) write the clean
 * text there. Returns whether everything was already clean. */
static bool walk(const unsigned char *s, size_t n, bool newlines, char *out)
{
	bool clean = true;
	size_t i = 0, o = 0;

	while (i < n) {
		uint32_t cp = 0;
		size_t bad = 0, len = utf8_next(s + i, n - i, &cp, &bad);

		if (len && !cp_unsafe(cp, newlines)) {
			if (out)
				memcpy(out + o, s + i, len);
			o += len;
			i += len;
			continue;
		}
		if (!out)
			return false;
		clean = false;
		out[o++] = '?';
		i += len ? len : bad;
	}
	if (out)
		out[o] = '\0';
	return clean;
}

char *text_clean(const void *s, size_t len, size_t max, bool newlines)
{
	char *out;

	if (len > max)
		len = max;
	out = xmalloc(len + 1);
	walk(s, len, newlines, out);
	return out;
}

bool text_is_clean(const void *s, size_t len, bool newlines)
{
	return walk(s, len, newlines, NULL);
}
