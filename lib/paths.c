/* paths.c - see paths.h */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "paths.h"
#include "util.h"

const char *fc_root(void)
{
	const char *r = getenv("FCVM_ROOT");

	return r && *r ? r : FC_DEFAULT_ROOT;
}

char *fc_path(const char *fmt, ...)
{
	_cleanup_free_ char *rel = NULL;
	va_list ap;

	va_start(ap, fmt);
	if (vasprintf(&rel, fmt, ap) < 0)
		rel = NULL;
	va_end(ap);
	if (!rel)
		return xstrdup("");	/* unreachable in practice: xasprintf below aborts on OOM */
	return xasprintf("%s/%s", fc_root(), rel);
}

bool fc_valid_name(const char *name)
{
	size_t n = strlen(name);

	if (n == 0 || n > 63 || name[0] == '.' || name[0] == '-')
		return false;
	return strspn(name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
			    "0123456789_.-") == n;
}

int fc_root_init(struct fc_err *e)
{
	static const char *const dirs[] = { "kernels", "rootfs", "images", "vm-disks",
					    "snapshots", "state", "run", "locks" };
	size_t i;

	for (i = 0; i < ARRAY_SIZE(dirs); i++) {
		_cleanup_free_ char *d = fc_path("%s", dirs[i]);

		if (mkdir_p(d, 0755, e) < 0)
			return fc_err_wrap(e, "prepare data root '%s' (set FCVM_ROOT or run 'fc-setup storage')",
					   fc_root());
	}
	return 0;
}
