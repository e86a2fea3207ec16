/* rootless.c - rootless mode (fc-net up --mode rootless). */
#include <errno.h>

#include "net.h"

int rootless_up(struct up_opts *o, json_t **out, struct fc_err *e)
{
	(void)o;
	(void)out;
	return fc_err_set(e, ENOSYS, "rootless mode is not implemented yet");
}

int rootless_down(json_t *rec, struct fc_err *e)
{
	(void)rec;
	(void)e;
	return 0;
}
