/* connline.c - the host client's "CONNECT <port>\n" request line. */
#include "fc-vsock.h"

int parse_connect_line(const char *s, size_t len, uint32_t *port)
{
	static const char pfx[] = "CONNECT ";
	const size_t plen = sizeof(pfx) - 1;
	uint64_t v = 0;
	size_t i;

	if (len < plen + 2 || len > CONNECT_LINE_MAX || s[len - 1] != '\n')
		return -1;
	for (i = 0; i < plen; i++)
		if (s[i] != pfx[i])
			return -1;
	if (len - 1 - plen > 10 || (s[plen] == '0' && len - 1 - plen > 1))
		return -1;
	for (i = plen; i < len - 1; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		v = v * 10 + (uint64_t)(s[i] - '0');
	}
	if (v > UINT32_MAX)
		return -1;
	*port = (uint32_t)v;
	return 0;
}
