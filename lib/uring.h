/*
 * uring.h - what uring.c offers wait.c and the tests (internal).
 */
#ifndef FIPC_LIB_URING_H
#define FIPC_LIB_URING_H

#include <stdbool.h>

#define URING_OP_FUTEX_WAIT  51 /* IORING_OP_FUTEX_WAIT, Linux 6.7 */
#define URING_OP_FUTEX_WAITV 53 /* IORING_OP_FUTEX_WAITV */

/* Whether the kernel's io_uring has its futex operations (WAIT and WAITV
 * both): probed once per process. */
bool fipc__uring_has_futex(void);

#ifdef FIPC_TEST_HOOKS
/* Set by fipc__uring_pretend_unsupported (test_hooks.c): answer as a kernel
 * without io_uring futex operations would. */
extern bool fipc__uring_unsupported;
#endif

#endif
