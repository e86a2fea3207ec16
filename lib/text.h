/* text.h - the one sanitiser for untrusted text (guest messages, archive
 * manifests, VMM output) on its way to a terminal or a log.
 *
 * Only printable text passes: UTF-8 is decoded, and C0 controls (but \n
 * and \t when allowed), DEL, C1 controls (U+0080..U+009F, including the
 * 8-bit CSI U+009B), bidirectional overrides and isolates (U+200E, U+200F,
 * U+202A..U+202E, U+2066..U+2069), and malformed, overlong or surrogate
 * sequences each become one '?'. Nothing can start an escape sequence or
 * reorder what the user reads.
 */
#ifndef FC_TEXT_H
#define FC_TEXT_H

#include <stdbool.h>
#include <stddef.h>

/* Sanitised copy of @len bytes of @s (NUL-terminated, caller frees); at
 * most @max input bytes are read (a cut inside a UTF-8 sequence gives
 * '?'). @newlines keeps '\n' and '\t' (multi-line messages); without it
 * they become '?' too (names, single-line fields). */
char *text_clean(const void *s, size_t len, size_t max, bool newlines);

/* True when text_clean() would return @s unchanged (@newlines as there). */
bool text_is_clean(const void *s, size_t len, bool newlines);

#endif
