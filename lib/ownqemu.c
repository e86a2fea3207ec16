/* ownqemu.c - see ownqemu.h */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "json.h"
#include "ownqemu.h"
#include "util.h"

const char *ownqemu_cache(void)
{
	const char *c = getenv("FCVM_CACHE");

	return c && *c ? c : "/var/cache/fcvm";
}

bool ownqemu_is_capable(const char *bin, struct fc_err *why)
{
	struct fc_err dummy;
	char real[PATH_MAX], *slash;
	_cleanup_free_ char *man = NULL;
	_cleanup_json_ json_t *j = NULL;

	if (!why)
		why = &dummy;
	if (!strchr(bin, '/') || !realpath(bin, real))
		return fc_err_set(why, 0, "'%s' is not fcvm's QEMU (build it with 'fc-setup qemu')",
				  bin), false;
	/* <dir>/bin/qemu-system-x86_64 -> <dir>/manifest.json */
	slash = strrchr(real, '/');
	*slash = '\0';
	slash = strrchr(real, '/');
	if (!slash || strcmp(slash, "/bin") != 0)
		return fc_err_set(why, 0, "'%s' is not fcvm's QEMU (build it with 'fc-setup qemu')",
				  bin), false;
	*slash = '\0';
	man = xasprintf("%s/manifest.json", real);
	j = json_load_path(man, 1 << 16, why);
	if (!j || !json_is_true(json_object_get(j, "snapshot_capable")))
		return fc_err_set(why, 0, "'%s' is not fcvm's QEMU (no snapshot-capable manifest beside it; build it with 'fc-setup qemu')",
				  bin), false;
	return true;
}

char *ownqemu_select(bool *capable, struct fc_err *why)
{
	const char *env = getenv("FCVM_QEMU");
	_cleanup_free_ char *def = xasprintf("%s/%s", ownqemu_cache(), OWNQEMU_DEFAULT);
	char *bin;

	if (env && *env)
		bin = xstrdup(env);
	else if (access(def, X_OK) == 0)
		bin = xstrdup(def);
	else
		bin = xstrdup("qemu-system-x86_64");
	*capable = ownqemu_is_capable(bin, why);
	if (!*capable && !(env && *env) && why)
		fc_err_set(why, 0, "only a stock QEMU is present (fcvm's snapshot-capable QEMU '%s' is not built: run 'fc-setup qemu')",
			   def);
	return bin;
}
