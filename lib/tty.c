/* tty.c - see tty.h */
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <termios.h>

#include "tty.h"

static struct termios saved;
static int raw_fd = -1;
static bool registered;

void tty_restore(void)
{
	if (raw_fd < 0)
		return;
	tcsetattr(raw_fd, TCSADRAIN, &saved);
	raw_fd = -1;
}

int tty_raw(int fd, struct fc_err *e)
{
	struct termios t;

	if (tcgetattr(fd, &saved) < 0)
		return fc_err_set(e, errno, "read the terminal's modes");
	t = saved;
	cfmakeraw(&t);
	if (!registered) {
		atexit(tty_restore);
		registered = true;
	}
	raw_fd = fd;
	if (tcsetattr(fd, TCSADRAIN, &t) < 0) {
		raw_fd = -1;
		return fc_err_set(e, errno, "put the terminal in raw mode");
	}
	return 0;
}
