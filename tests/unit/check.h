/* check.h - the one check helper of the C unit tests (each test is a single
 * program, so this header holds the code itself).
 *
 * CHECK(cond, what): evaluates @cond once; prints "ok - WHAT", or
 * "not ok - WHAT (file:line)" and counts a failure. Its value is whether
 * @cond held, for printing more about a failure.
 *
 * check_done(): prints a summary line ("# all N checks passed" or
 * "# F of N checks failed") and returns main()'s exit status: 1 if any
 * check failed, else 0.
 */
#ifndef FC_TEST_CHECK_H
#define FC_TEST_CHECK_H

#include <stdio.h>

static int check_count, check_failures;

static inline int check_one(int ok, const char *what, const char *file, int line)
{
	check_count++;
	if (ok) {
		printf("ok - %s\n", what);
	} else {
		printf("not ok - %s (%s:%d)\n", what, file, line);
		check_failures++;
	}
	return ok;
}

#define CHECK(cond, what) check_one(!!(cond), (what), __FILE__, __LINE__)

static inline int check_done(void)
{
	if (check_failures)
		printf("# %d of %d checks failed\n", check_failures, check_count);
	else
		printf("# all %d checks passed\n", check_count);
	return check_failures ? 1 : 0;
}

#endif
