/* fc-state.h - the subcommands of fc-state (see fc-state(1)). Each parses
 * its own arguments (argv[0] is the subcommand) and returns the exit code:
 * 0 ok, 1 failure / not found / timeout, 2 usage.
 */
#ifndef FC_STATE_TOOL_H
#define FC_STATE_TOOL_H

#define FC_STATE_USAGE                                                        \
	"usage: fc-state ls [-a] [--json]\n"                                  \
	"       fc-state get [--field NAME] KEY\n"                            \
	"       fc-state wait [--timeout SEC] [--pid PID[:START]] KEY STATUS\n" \
	"       fc-state gc [-n] [--json]\n"                                  \
	"       fc-state -h\n"

int cmd_ls(int argc, char **argv);
int cmd_get(int argc, char **argv);
int cmd_wait(int argc, char **argv);
int cmd_gc(int argc, char **argv);

#endif
