/*
 * conn_impl.h - the layout of a pipe in shared memory and of its ends in
 * private memory (internal; conn.c documents the protocol).
 */
#ifndef FIPC_LIB_CONN_IMPL_H
#define FIPC_LIB_CONN_IMPL_H

#include <assert.h>

#include <fipc/conn.h>
#include <fipc/lock.h>

#include "eventcount.h"

#define CONN_MAGIC UINT64_C(0x6e6e6f635f637066) /* "fpc_conn" */
#define RING       ((uint64_t)FIPC_CONN_RING)

static_assert((FIPC_CONN_RING & (FIPC_CONN_RING - 1)) == 0, "the ring is a power of two");

struct conn_dir {
    _Alignas(FIPC_CACHELINE) uint64_t tail;
    uint64_t send_cur;
    uint64_t send_end;
    uint64_t head_seen; /* the senders' last look at head */
    _Alignas(FIPC_CACHELINE) uint64_t abort_start;
    uint64_t abort_resume;
    _Alignas(FIPC_CACHELINE) uint64_t head;
    uint64_t rmsg_start;
    uint64_t rmsg_end;
    uint64_t tail_seen; /* the receivers' last look at tail */
    _Alignas(FIPC_CACHELINE) struct eventcount not_empty;
    uint32_t fd_mode;
    uint32_t fd_wait;
    _Alignas(FIPC_CACHELINE) struct eventcount not_full;
    _Alignas(FIPC_CACHELINE) fipc_lock send_lock;
    _Alignas(FIPC_CACHELINE) fipc_lock recv_lock;
};
static_assert(sizeof(struct conn_dir) == 7 * FIPC_CACHELINE, "direction layout");

struct conn_shared {
    uint64_t magic;
    uint32_t duplex;
    _Alignas(FIPC_CACHELINE) struct conn_dir dir[2];
};

/* Where direction d's ring starts, from the start of the region. */
#define RING_OFF(d) ((sizeof(struct conn_shared) + 4095) / 4096 * 4096 + (d)*RING)

/* What the ends of one pipe share inside one process: the mapping and the
 * eventfds, released with the process's last end. */
struct conn_map {
    int refs; /* ends of this pipe this process still holds */
    struct conn_shared *sh;
    size_t len;
    int efd[2]; /* the receiver's eventfd of each direction, or -1 */
};

struct fipc_conn {
    struct conn_map *map;
    int sock;    /* this end's side of the socket pair */
    int ep;      /* fileno: epoll on sock and in_efd */
    int in_efd;  /* eventfd of the direction this end receives, or -1 */
    int out_efd; /* eventfd of the direction this end sends, or -1 */
    struct conn_dir *in, *out;
    char *in_ring, *out_ring;
    int64_t next_check; /* when send next asks whether the peer is gone
                         * (CLOCK_MONOTONIC_COARSE) */
};

#endif
