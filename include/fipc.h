/*
 * fipc.h - inter-process communication primitives on futexes.
 *
 * Everything at once; each module also has its own header under fipc/.
 */
#ifndef FIPC_H
#define FIPC_H

#include <fipc/common.h>
#include <fipc/arena.h>
#include <fipc/lock.h>
#include <fipc/sem.h>
#include <fipc/event.h>
#include <fipc/cond.h>
#include <fipc/barrier.h>
#include <fipc/process.h>
#include <fipc/queue.h>
#include <fipc/jqueue.h>
#include <fipc/pool.h>
#include <fipc/value.h>
#include <fipc/dict.h>
#include <fipc/conn.h>
#include <fipc/wait.h>
#include <fipc/uring.h>

#endif
