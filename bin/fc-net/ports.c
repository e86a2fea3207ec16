/* ports.c - podman-style published ports: see net.h */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "net.h"
#include "util.h"

const char *proto_name(int proto)
{
	return proto == IPPROTO_UDP ? "udp" : "tcp";
}

/* "A" or "A-B" of ports 1..65535; *@lo..*@hi. */
static int parse_range(const char *s, const char *spec, const char *what, uint16_t *lo,
		       uint16_t *hi, struct fc_err *e)
{
	char buf[32];
	const char *dash;
	uint64_t a, b;
	struct fc_err e2;

	if (strlen(s) >= sizeof(buf) || !*s)
		return fc_err_set(e, 0, "invalid port '%s': empty or too long %s", spec, what);
	snprintf(buf, sizeof(buf), "%s", s);
	dash = strchr(buf, '-');
	if (dash)
		buf[dash - buf] = '\0';
	if (parse_u64(buf, 1, 65535, what, &a, &e2) < 0)
		return fc_err_set(e, 0, "invalid port '%s': %s must be a port 1-65535 or a range A-B",
				  spec, what);
	b = a;
	if (dash && parse_u64(buf + (dash - buf) + 1, 1, 65535, what, &b, &e2) < 0)
		return fc_err_set(e, 0, "invalid port '%s': %s must be a port 1-65535 or a range A-B",
				  spec, what);
	if (b < a)
		return fc_err_set(e, 0, "invalid port '%s': %s range %s ends before it starts", spec,
				  what, s);
	*lo = (uint16_t)a;
	*hi = (uint16_t)b;
	return 0;
}

int port_parse(const char *spec, struct port_map *maps, size_t *n, struct fc_err *e)
{
	char buf[128];
	char *proto, *parts[4];
	int np = 0, pr = IPPROTO_TCP;
	struct in_addr hip = { htonl(INADDR_ANY) };
	bool hip_given = false;
	uint16_t hlo = 0, hhi = 0, glo, ghi;
	char *s, *colon;
	unsigned int i, count;

	if (strlen(spec) >= sizeof(buf))
		return fc_err_set(e, 0, "invalid port '%.40s...': too long", spec);
	if (spec[0] == '[' || strchr(spec, ']'))
		return fc_err_set(e, 0, "invalid port '%s': IPv6 host addresses are not supported", spec);
	snprintf(buf, sizeof(buf), "%s", spec);
	proto = strchr(buf, '/');
	if (proto) {
		*proto++ = '\0';
		if (!strcmp(proto, "tcp"))
			pr = IPPROTO_TCP;
		else if (!strcmp(proto, "udp"))
			pr = IPPROTO_UDP;
		else
			return fc_err_set(e, 0, "invalid port '%s': protocol '%s' is not supported (tcp or udp)",
					  spec, proto);
	}
	for (s = buf; np < 4; s = colon + 1) {
		parts[np++] = s;
		colon = strchr(s, ':');
		if (!colon)
			break;
		*colon = '\0';
	}
	if (np > 3)
		return fc_err_set(e, 0, "invalid port '%s': expected [HOSTIP:][HOSTPORT:]GUESTPORT[/PROTO]",
				  spec);
	if (np == 3) {
		if (inet_pton(AF_INET, parts[0], &hip) != 1)
			return fc_err_set(e, 0, "invalid port '%s': host address '%s' is not an IPv4 address",
					  spec, parts[0]);
		hip_given = true;
	}
	if (parse_range(parts[np - 1], spec, "guest port", &glo, &ghi, e) < 0)
		return -1;
	if (np >= 2 && parts[np - 2][0] &&
	    parse_range(parts[np - 2], spec, "host port", &hlo, &hhi, e) < 0)
		return -1;
	count = (unsigned int)(ghi - glo) + 1;
	if (hlo && (unsigned int)(hhi - hlo) + 1 != count)
		return fc_err_set(e, 0, "invalid port '%s': host range and guest range differ in length",
				  spec);
	if (*n + count > NET_MAX_PORTS)
		return fc_err_set(e, 0, "invalid port '%s': more than %d published ports", spec,
				  NET_MAX_PORTS);
	for (i = 0; i < count; i++) {
		struct port_map *m = &maps[(*n)++];

		m->proto = pr;
		m->host_ip = hip;
		m->host_ip_given = hip_given;
		m->host_port = hlo ? (uint16_t)(hlo + i) : 0;
		m->guest_port = (uint16_t)(glo + i);
	}
	return 0;
}
