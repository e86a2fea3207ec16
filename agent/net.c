/* net.c - see net.h */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <net/if.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <linux/if_addr.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>

#include "fsutil.h"
#include "log.h"
#include "net.h"
#include "util.h"

#define NET_WAIT_MS	10000	/* for the NIC to appear */
#define NL_REPLY_MS	5000

struct rtnl {
	int fd;
	uint32_t seq, portid;
};

struct req {
	struct nlmsghdr h;
	union {
		struct ifinfomsg ifi;
		struct ifaddrmsg ifa;
		struct rtmsg rtm;
	} u;
	char attrs[256];
};

static void add_attr(struct req *r, unsigned short type, const void *data, size_t len)
{
	struct rtattr *a = (struct rtattr *)((char *)&r->h + NLMSG_ALIGN(r->h.nlmsg_len));

	a->rta_type = type;
	a->rta_len = (unsigned short)RTA_LENGTH(len);
	memcpy(RTA_DATA(a), data, len);
	r->h.nlmsg_len = NLMSG_ALIGN(r->h.nlmsg_len) + RTA_ALIGN(a->rta_len);
}

static int rtnl_open(struct rtnl *nl, struct fc_err *e)
{
	struct sockaddr_nl sa = { .nl_family = AF_NETLINK };
	socklen_t sl = sizeof(sa);
	int one = 1;

	nl->fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
	if (nl->fd < 0)
		return fc_err_set(e, errno, "netlink socket");
	setsockopt(nl->fd, SOL_NETLINK, NETLINK_EXT_ACK, &one, sizeof(one));
	if (bind(nl->fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
	    getsockname(nl->fd, (struct sockaddr *)&sa, &sl) < 0)
		return fc_err_set(e, errno, "bind netlink socket");
	nl->portid = sa.nl_pid;
	nl->seq = (uint32_t)time(NULL);
	return 0;
}

/* Send @r with NLM_F_ACK and wait for its ack. 0, or -1 with @e (the
 * kernel's error; EEXIST reported as errnum EEXIST). */
static int rtnl_talk(struct rtnl *nl, struct req *r, struct fc_err *e)
{
	struct sockaddr_nl to = { .nl_family = AF_NETLINK };
	char buf[8192] __attribute__((aligned(4)));

	r->h.nlmsg_flags |= NLM_F_REQUEST | NLM_F_ACK;
	r->h.nlmsg_seq = ++nl->seq;
	if (sendto(nl->fd, r, r->h.nlmsg_len, 0, (struct sockaddr *)&to, sizeof(to)) < 0)
		return fc_err_set(e, errno, "netlink send");
	for (;;) {
		struct pollfd p = { nl->fd, POLLIN, 0 };
		struct sockaddr_nl from;
		socklen_t fl = sizeof(from);
		ssize_t n;
		int pr = poll(&p, 1, NL_REPLY_MS);

		if (pr < 0 && errno == EINTR)
			continue;
		if (pr <= 0)
			return fc_err_set(e, pr < 0 ? errno : ETIMEDOUT, "netlink reply");
		n = recvfrom(nl->fd, buf, sizeof(buf), 0, (struct sockaddr *)&from, &fl);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return fc_err_set(e, errno, "netlink receive");
		}
		if (from.nl_pid != 0)
			continue;	/* not from the kernel */
		for (struct nlmsghdr *h = (struct nlmsghdr *)buf; NLMSG_OK(h, (size_t)n);
		     h = NLMSG_NEXT(h, n)) {
			const struct nlmsgerr *err;

			if (h->nlmsg_seq != nl->seq || h->nlmsg_pid != nl->portid)
				continue;	/* an old reply */
			if (h->nlmsg_type != NLMSG_ERROR)
				continue;
			if (h->nlmsg_len < NLMSG_LENGTH(sizeof(*err)))
				return fc_err_set(e, EPROTO, "short netlink error message");
			err = NLMSG_DATA(h);
			if (err->error == 0)
				return 0;
			return fc_err_set(e, -err->error, "netlink");
		}
	}
}

static int link_up(struct rtnl *nl, int ifindex, struct fc_err *e)
{
	struct req r = { 0 };

	r.h.nlmsg_len = NLMSG_LENGTH(sizeof(r.u.ifi));
	r.h.nlmsg_type = RTM_NEWLINK;
	r.u.ifi.ifi_family = AF_UNSPEC;
	r.u.ifi.ifi_index = ifindex;
	r.u.ifi.ifi_flags = IFF_UP;
	r.u.ifi.ifi_change = IFF_UP;
	return rtnl_talk(nl, &r, e);
}

static int addr_add(struct rtnl *nl, int ifindex, struct in_addr ip, int prefix,
		    struct fc_err *e)
{
	struct req r = { 0 };
	uint32_t mask = ~0u << (32 - prefix);
	struct in_addr brd = { htonl((ntohl(ip.s_addr) & mask) | ~mask) };

	r.h.nlmsg_len = NLMSG_LENGTH(sizeof(r.u.ifa));
	r.h.nlmsg_type = RTM_NEWADDR;
	r.h.nlmsg_flags = NLM_F_CREATE | NLM_F_EXCL;
	r.u.ifa.ifa_family = AF_INET;
	r.u.ifa.ifa_prefixlen = (unsigned char)prefix;
	r.u.ifa.ifa_scope = RT_SCOPE_UNIVERSE;
	r.u.ifa.ifa_index = (unsigned)ifindex;
	add_attr(&r, IFA_LOCAL, &ip, sizeof(ip));
	add_attr(&r, IFA_ADDRESS, &ip, sizeof(ip));
	add_attr(&r, IFA_BROADCAST, &brd, sizeof(brd));
	return rtnl_talk(nl, &r, e);
}

static int route_default(struct rtnl *nl, int ifindex, struct in_addr gw, struct fc_err *e)
{
	struct req r = { 0 };
	uint32_t oif = (uint32_t)ifindex;

	r.h.nlmsg_len = NLMSG_LENGTH(sizeof(r.u.rtm));
	r.h.nlmsg_type = RTM_NEWROUTE;
	r.h.nlmsg_flags = NLM_F_CREATE | NLM_F_EXCL;
	r.u.rtm.rtm_family = AF_INET;
	r.u.rtm.rtm_table = RT_TABLE_MAIN;
	r.u.rtm.rtm_protocol = RTPROT_BOOT;
	r.u.rtm.rtm_scope = RT_SCOPE_UNIVERSE;
	r.u.rtm.rtm_type = RTN_UNICAST;
	add_attr(&r, RTA_GATEWAY, &gw, sizeof(gw));
	add_attr(&r, RTA_OIF, &oif, sizeof(oif));
	return rtnl_talk(nl, &r, e);
}

/* The interface whose address is @mac (from /sys/class/net), or eth0 when
 * no MAC is given. Copies its name into @name. 0 if found, 1 if not yet. */
static int find_nic(const struct plan_net *n, char name[IF_NAMESIZE])
{
	struct dirent *de;
	char want[18];
	int found = 1;
	DIR *d;

	if (!n->has_mac) {
		if (if_nametoindex("eth0") == 0)
			return 1;
		snprintf(name, IF_NAMESIZE, "eth0");
		return 0;
	}
	snprintf(want, sizeof(want), "%02x:%02x:%02x:%02x:%02x:%02x", n->mac[0], n->mac[1],
		 n->mac[2], n->mac[3], n->mac[4], n->mac[5]);
	d = opendir("/sys/class/net");
	if (!d)
		return 1;
	while ((de = readdir(d))) {
		_cleanup_free_ char *path = NULL, *addr = NULL;
		struct fc_err e;
		size_t len = 0;

		if (de->d_name[0] == '.' || strlen(de->d_name) >= IF_NAMESIZE)
			continue;
		path = xasprintf("/sys/class/net/%s/address", de->d_name);
		addr = read_file_max(path, 64, &len, &e);
		if (addr && len >= 17 && !strncasecmp(addr, want, 17)) {
			snprintf(name, IF_NAMESIZE, "%s", de->d_name);
			found = 0;
			break;
		}
	}
	closedir(d);
	return found;
}

static int write_resolv(const struct plan_net *n, struct fc_err *e)
{
	char buf[256] = "# written by fc-agent from the run plan\n";
	size_t len = strlen(buf);

	for (int i = 0; i < n->ndns; i++) {
		char a[INET_ADDRSTRLEN];

		inet_ntop(AF_INET, &n->dns[i], a, sizeof(a));
		len += (size_t)snprintf(buf + len, sizeof(buf) - len, "nameserver %s\n", a);
	}
	if (fs_write_atomic("/etc/resolv.conf", buf, len, 0644, e) < 0)
		return fc_err_wrap(e, "write /etc/resolv.conf");
	return 0;
}

int net_configure(const struct plan_net *n, struct fc_err *e)
{
	struct rtnl nl = { -1, 0, 0 };
	char nic[IF_NAMESIZE] = "";
	char ip[INET_ADDRSTRLEN], gw[INET_ADDRSTRLEN];
	int ifindex, lo, r = -1, waited = 0;

	inet_ntop(AF_INET, &n->ip, ip, sizeof(ip));
	inet_ntop(AF_INET, &n->gateway, gw, sizeof(gw));
	while (find_nic(n, nic) != 0) {
		if (waited >= NET_WAIT_MS)
			return fc_err_set(e, ENODEV, "no network interface%s%s appeared within %d s "
					  "(is virtio_net loaded?)", n->has_mac ? " with the plan's MAC" : "",
					  n->has_mac ? "" : " 'eth0'", NET_WAIT_MS / 1000);
		usleep(100 * 1000);
		waited += 100;
	}
	ifindex = (int)if_nametoindex(nic);
	lo = (int)if_nametoindex("lo");
	if (ifindex <= 0)
		return fc_err_set(e, errno, "interface '%s' vanished", nic);
	if (rtnl_open(&nl, e) < 0)
		goto out;
	if (lo > 0 && link_up(&nl, lo, e) < 0) {
		fc_err_wrap(e, "bring up 'lo'");
		goto out;
	}
	if (link_up(&nl, ifindex, e) < 0) {
		fc_err_wrap(e, "bring up '%s'", nic);
		goto out;
	}
	if (addr_add(&nl, ifindex, n->ip, n->prefix, e) < 0 && e->errnum != EEXIST) {
		fc_err_wrap(e, "configure '%s': add address %s/%d", nic, ip, n->prefix);
		goto out;
	}
	if (route_default(&nl, ifindex, n->gateway, e) < 0 && e->errnum != EEXIST) {
		fc_err_wrap(e, "configure '%s': default route via %s", nic, gw);
		goto out;
	}
	if (write_resolv(n, e) < 0)
		goto out;
	log_info("network: %s %s/%d via %s, %d resolver(s)", nic, ip, n->prefix, gw, n->ndns);
	r = 0;
out:
	if (nl.fd >= 0)
		close(nl.fd);
	return r;
}
