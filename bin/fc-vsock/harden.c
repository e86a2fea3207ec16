/* harden.c - what fc-vsock gives up once the front-end is connected. */
#include <errno.h>
#include <sys/prctl.h>

#include "fc-vsock.h"

int vsock_harden(struct fc_err *e);

int vsock_harden(struct fc_err *e)
{
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
		return fc_err_set(e, errno, "PR_SET_NO_NEW_PRIVS");
	return 0;
}
