/* test_volfs_ids - fc-volfs's own node ids (bin/fc-volfs/ids.c): the same
 * server node gives the same id, names follow renames and unlinks, a new
 * epoch makes nodes stale and they are found again along their names, and
 * the server is told to forget exactly what it counted. */
#include <errno.h>
#include <string.h>

#include "../../bin/fc-volfs/ids.h"
#include "check.h"

int main(void)
{
	uint64_t chain[8], srv, cnt, parent;
	uint32_t ep, fep;
	char name[256];
	int n;

	ids_init(1);
	ep = ids_epoch();
	uint64_t d = ids_add(IDS_ROOT, "d", 100, ep);
	uint64_t f = ids_add(d, "f", 101, ep);

	CHECK(d > IDS_ROOT && f > d, "new nodes get new ids above the root");
	CHECK(ids_add(d, "f", 101, ep) == f, "the same server node gives the same id");
	CHECK(ids_add(d, "hard", 101, ep) == f, "a hard link is the same node too");
	CHECK(ids_srv(f, ep, &srv) == 0 && srv == 101, "a current node has its server id");
	CHECK(ids_stale_chain(f, ep, chain, 8) == 0, "nothing to find again while current");

	ids_rename(d, "hard", IDS_ROOT, "g", false);
	CHECK(ids_name_of(f, &parent, name, sizeof(name)) == 0 && parent == IDS_ROOT &&
		      !strcmp(name, "g"), "a rename moves the node's name");

	ep = ids_new_epoch();
	CHECK(ids_srv(f, ep, &srv) == -ESTALE, "a new epoch makes every node stale");
	CHECK(ids_srv(IDS_ROOT, ep, &srv) == 0 && srv == 1, "but the root");
	n = ids_stale_chain(f, ep, chain, 8);
	CHECK(n == 1 && chain[0] == f, "a node named under the root is found by one lookup");
	ids_set(f, 201, ep);
	CHECK(ids_srv(f, ep, &srv) == 0 && srv == 201, "found again: its new server id");
	CHECK(ids_add(IDS_ROOT, "d", 300, ep) == d, "a fresh lookup takes over the stale node of that name");

	uint64_t e = ids_add(d, "e", 301, ep), x = ids_add(e, "x", 302, ep);

	ep = ids_new_epoch();
	n = ids_stale_chain(x, ep, chain, 8);
	CHECK(n == 3 && chain[0] == d && chain[1] == e && chain[2] == x,
	      "a deep node is found again from the root down");
	CHECK(ids_stale_chain(x, ep, chain, 2) == -ELOOP, "the walk is bounded");

	ids_unlink(e, "x");
	CHECK(ids_stale_chain(x, ep, chain, 8) == -ESTALE, "an unlinked stale node cannot be found again");

	ids_rename(IDS_ROOT, "d", IDS_ROOT, "g", true);
	CHECK(ids_name_of(d, &parent, name, sizeof(name)) == 0 && !strcmp(name, "g") &&
		      ids_name_of(f, &parent, name, sizeof(name)) == 0 && !strcmp(name, "d"),
	      "RENAME_EXCHANGE swaps the two names");

	/* Forget: the server learns only the final forget, of its own count. */
	ids_set(e, 400, ep);
	ids_add(d, "e", 400, ep);
	uint64_t y = ids_add(e, "y", 401, ep);

	CHECK(!ids_forget(e, 1, &srv, &cnt, &fep), "a partial forget is not sent");
	CHECK(ids_forget(e, 1, &srv, &cnt, &fep) && srv == 400 && cnt == 2 && fep == ep,
	      "the final forget gives back what the server counted in its epoch");
	CHECK(ids_name_of(e, &parent, name, sizeof(name)) == 0,
	      "a forgotten node named as a parent stays for its child's path");
	CHECK(!ids_forget(x, 1, &srv, &cnt, &fep), "a stale node's forget is not sent");
	CHECK(ids_forget(y, 1, &srv, &cnt, &fep) && srv == 401, "a current leaf's forget is sent");
	CHECK(ids_name_of(e, &parent, name, sizeof(name)) < 0, "and with its last child it goes");
	size_t before = ids_count();

	ids_forget(f, 3, &srv, &cnt, &fep);
	CHECK(ids_count() == before - 1, "a fully forgotten leaf is freed");

	/* Many nodes: the maps grow. */
	ep = ids_epoch();
	for (uint64_t i = 0; i < 5000; i++) {
		char nm[32];

		snprintf(nm, sizeof(nm), "n%llu", (unsigned long long)i);
		ids_add(IDS_ROOT, nm, 1000 + i, ep);
	}
	CHECK(ids_add(IDS_ROOT, "n4999", 5999, ep) == ids_add(IDS_ROOT, "n4999", 5999, ep),
	      "lookups stay right after the maps grew");
	return check_done();
}
