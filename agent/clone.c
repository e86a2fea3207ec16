/* clone.c - the clone fix-up in the guest. See clone.h for the order. */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ifaddrs.h>
#include <linux/if_packet.h>
#include <linux/random.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <net/if_arp.h>
#include <netinet/in.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "clone.h"
#include "clonefix.h"
#include "log.h"
#include "util.h"

#define UTS_MAX 64	/* container namespaces renamed at most (one container: a few) */

/* 2. Mix the seed in, credit it, reseed. *@reseeded: RNDRESEEDCRNG worked. */
static int seed_rng(const struct clonefix *f, bool *reseeded, struct fc_err *e)
{
	struct {
		struct rand_pool_info info;
		uint8_t buf[CLONEFIX_SEED_MAX];
	} p;
	_cleanup_close_ int fd = open("/dev/urandom", O_WRONLY | O_CLOEXEC);

	if (fd < 0)
		return fc_err_set(e, errno, "open /dev/urandom");
	memset(&p, 0, sizeof(p));
	p.info.entropy_count = (int)f->seed_len * 8;
	p.info.buf_size = (int)f->seed_len;
	memcpy(p.buf, f->seed, f->seed_len);
	if (ioctl(fd, RNDADDENTROPY, &p) < 0) {
		explicit_bzero(&p, sizeof(p));
		return fc_err_set(e, errno, "add the host's seed to the RNG (RNDADDENTROPY)");
	}
	explicit_bzero(&p, sizeof(p));
	*reseeded = ioctl(fd, RNDRESEEDCRNG) == 0;
	if (!*reseeded && errno != ENOTTY && errno != EINVAL)
		return fc_err_set(e, errno, "reseed the RNG (RNDRESEEDCRNG)");
	if (!*reseeded)
		log_warn("this kernel cannot reseed its RNG at once (no RNDRESEEDCRNG): the seed "
			 "takes effect at its next reseed");
	return 0;
}

/* 4. The hostname of every UTS namespace but ours that a process in /proc
 * is in. Returns how many were renamed, or -1 with @e. */
static int rename_containers(const char *name, struct fc_err *e)
{
	char self[64], seen[UTS_MAX][64];
	int nseen = 0, renamed = 0;
	_cleanup_close_ int self_fd = open("/proc/self/ns/uts", O_RDONLY | O_CLOEXEC);
	ssize_t n = readlink("/proc/self/ns/uts", self, sizeof(self) - 1);
	DIR *d;
	struct dirent *de;

	if (self_fd < 0 || n <= 0)
		return fc_err_set(e, errno, "the agent's UTS namespace (/proc/self/ns/uts)");
	self[n] = '\0';
	d = opendir("/proc");
	if (!d)
		return fc_err_set(e, errno, "open /proc");
	while ((de = readdir(d))) {
		char path[64], ns[64];
		_cleanup_close_ int fd = -1;
		int i;

		if (de->d_name[0] < '1' || de->d_name[0] > '9')
			continue;
		snprintf(path, sizeof(path), "/proc/%.20s/ns/uts", de->d_name);
		n = readlink(path, ns, sizeof(ns) - 1);
		if (n <= 0)
			continue;	/* gone meanwhile */
		ns[n] = '\0';
		if (!strcmp(ns, self))
			continue;
		for (i = 0; i < nseen && strcmp(seen[i], ns); i++)
			;
		if (i < nseen)
			continue;
		if (nseen == UTS_MAX) {
			log_warn("more than %d UTS namespaces: the rest keep their hostname", UTS_MAX);
			break;
		}
		strcpy(seen[nseen++], ns);
		fd = open(path, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			continue;	/* gone meanwhile */
		if (setns(fd, CLONE_NEWUTS) < 0) {
			fc_err_set(e, errno, "enter the UTS namespace of pid %s", de->d_name);
			closedir(d);
			return -1;
		}
		if (sethostname(name, strlen(name)) < 0) {
			int err = errno;

			if (setns(self_fd, CLONE_NEWUTS) < 0)
				log_error("back to the agent's UTS namespace: %s", strerror(errno));
			fc_err_set(e, err, "set the hostname of pid %s's UTS namespace", de->d_name);
			closedir(d);
			return -1;
		}
		/* Without this the agent would go on in the container's
		 * namespace: nothing else to do but say so. */
		if (setns(self_fd, CLONE_NEWUTS) < 0) {
			fc_err_set(e, errno, "back to the agent's UTS namespace");
			closedir(d);
			return -1;
		}
		log_debug("hostname '%s' in %s (pid %s)", name, ns, de->d_name);
		renamed++;
	}
	closedir(d);
	return renamed;
}

/* 5. A gratuitous ARP (a request for our own address) from every
 * interface that is up and has an IPv4 address. Returns how many. A
 * failure to announce is logged, not fatal: the neighbours learn the
 * address at the next ARP anyway. */
static int announce(void)
{
	struct __attribute__((packed)) {
		struct arphdr h;
		uint8_t sha[ETH_ALEN], spa[4], tha[ETH_ALEN], tpa[4];
	} arp;
	struct ifaddrs *ifs, *i;
	_cleanup_close_ int ctl = -1, fd = -1;
	int sent = 0;

	if (getifaddrs(&ifs) < 0) {
		log_warn("re-announce the network: getifaddrs: %s", strerror(errno));
		return 0;
	}
	for (i = ifs; i; i = i->ifa_next) {
		struct sockaddr_ll to = { .sll_family = AF_PACKET, .sll_halen = ETH_ALEN };
		struct ifreq ifr = { 0 };

		if (!i->ifa_addr || i->ifa_addr->sa_family != AF_INET ||
		    !(i->ifa_flags & IFF_UP) || (i->ifa_flags & (IFF_LOOPBACK | IFF_NOARP)) ||
		    strlen(i->ifa_name) >= IFNAMSIZ)
			continue;
		if (ctl < 0)
			ctl = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
		if (fd < 0)
			fd = socket(AF_PACKET, SOCK_DGRAM | SOCK_CLOEXEC, htons(ETH_P_ARP));
		if (ctl < 0 || fd < 0) {
			log_warn("re-announce the network: socket: %s", strerror(errno));
			break;
		}
		strcpy(ifr.ifr_name, i->ifa_name);
		if (ioctl(ctl, SIOCGIFHWADDR, &ifr) < 0 || ifr.ifr_hwaddr.sa_family != ARPHRD_ETHER)
			continue;
		memset(&arp, 0, sizeof(arp));
		arp.h.ar_hrd = htons(ARPHRD_ETHER);
		arp.h.ar_pro = htons(ETH_P_IP);
		arp.h.ar_hln = ETH_ALEN;
		arp.h.ar_pln = 4;
		arp.h.ar_op = htons(ARPOP_REQUEST);
		memcpy(arp.sha, ifr.ifr_hwaddr.sa_data, ETH_ALEN);
		memcpy(arp.spa, &((struct sockaddr_in *)i->ifa_addr)->sin_addr, 4);
		memcpy(arp.tpa, arp.spa, 4);
		to.sll_protocol = htons(ETH_P_ARP);
		to.sll_ifindex = (int)if_nametoindex(i->ifa_name);
		memset(to.sll_addr, 0xff, ETH_ALEN);
		if (!to.sll_ifindex ||
		    sendto(fd, &arp, sizeof(arp), 0, (struct sockaddr *)&to, sizeof(to)) < 0) {
			log_warn("re-announce '%s': %s", i->ifa_name, strerror(errno));
			continue;
		}
		log_debug("gratuitous ARP on '%s'", i->ifa_name);
		sent++;
	}
	freeifaddrs(ifs);
	return sent;
}

static int apply(const struct clonefix *f, struct clonefix_done *d, struct fc_err *e)
{
	int n;

	if (seed_rng(f, &d->reseeded, e) < 0)
		return -1;
	if (clock_settime(CLOCK_REALTIME, &f->realtime) < 0)
		return fc_err_set(e, errno, "set the clock");
	if (sethostname(f->hostname, strlen(f->hostname)) < 0)
		return fc_err_set(e, errno, "set the hostname");
	n = rename_containers(f->hostname, e);
	if (n < 0)
		return fc_err_wrap(e, "the container's hostname");
	d->containers = n;
	d->announced = announce();
	return 0;
}

void clone_take(struct agent *a, struct conn *c, const uint8_t *payload, size_t len)
{
	struct clonefix f;
	struct clonefix_done d = { .reseeded = false };
	struct fc_err e;

	if (clonefix_parse((const char *)payload, len, &f, &e) < 0) {
		conn_send_error(c, e.msg);
	} else if (a->pid1 && apply(&f, &d, &e) < 0) {
		/* (the host says "clone fix-up: " before it) */
		log_error("clone fix-up: %s", e.msg);
		conn_send_error(c, e.msg);
	} else {
		_cleanup_free_ char *done = NULL;

		strcpy(d.hostname, f.hostname);
		done = clonefix_done_encode(&d);
		log_info("%s clone '%s' (%s): %lld container(s) renamed, RNG %s",
			 a->pid1 ? "now" : "test mode, not applied:", f.hostname, f.id,
			 d.containers, d.reseeded ? "reseeded" : "not reseeded");
		conn_send(c, MSG_CLONE_DONE, done, strlen(done));
	}
	explicit_bzero(f.seed, sizeof(f.seed));
	conn_finish(c);
}
