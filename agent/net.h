/* net.h - the guest's network, configured from the plan (fc-agent is
 * static: raw rtnetlink, no ip(8) and no libmnl).
 *
 * How it works: the initramfs loaded virtio_net before the switch to the
 * rootfs, so the kernel's ip= never saw eth0 (it runs before modules). The
 * agent therefore does what ip= would: lo up; the NIC with the plan's MAC
 * (else eth0), waited for (bounded), up; the address; the default route
 * via the gateway; /etc/resolv.conf (atomically) from network.dns. Each
 * netlink request is acknowledged (NLM_F_ACK), its sequence number and
 * port checked; an address or route that already exists counts as done,
 * so a second plan in the same guest configures nothing twice.
 */
#ifndef FC_AGENT_NET_H
#define FC_AGENT_NET_H

#include "err.h"
#include "plan.h"

/* Configure the guest's network from @n (n->set must be true). 0, or -1
 * with @e ("configure 'eth0': add address 10.0.2.15/24: File exists"). */
int net_configure(const struct plan_net *n, struct fc_err *e);

#endif
