/* stubs.c - subcommands not written yet (temporary). */
#include "log.h"
#include "setup.h"

int cmd_storage(int argc, char **argv) { (void)argc; (void)argv; diex("storage: not implemented yet"); }
int cmd_preflight(int argc, char **argv) { (void)argc; (void)argv; diex("preflight: not implemented yet"); }
