/*
 * dict_impl.h - the layout of a fipc_dict in shared memory (internal;
 * dict.c documents the protocol, new.c places it in an arena).
 */
#ifndef FIPC_LIB_DICT_IMPL_H
#define FIPC_LIB_DICT_IMPL_H

#include <assert.h>

#include <fipc/dict.h>
#include <fipc/lock.h>

#include "compiler.h"

#define DICT_MAGIC   UINT64_C(0x326369645f637066) /* "fpc_dic2" */
#define DICT_DIM_MAX ((size_t)1 << 24)

/* Slot states (the word state). */
#define SLOT_EMPTY   0u /* never used: a probe for a key stops here */
#define SLOT_USED    1u /* holds a key and its value */
#define SLOT_TOMB    2u /* used once, free again */
#define SLOT_CLAIMED 3u /* | stripe << 8: being filled with a new key */

struct dict_header {
    uint64_t magic;
    uint64_t max_keys; /* slots */
    uint64_t max_key;
    uint64_t max_val;
};

struct dict_slot {
    uint32_t state;
    uint32_t hash;
    uint32_t klen;
    uint32_t cur;     /* which of the two values is current (0 or 1) */
    uint32_t vlen[2]; /* the two values' lengths */
    uint32_t seq;     /* odd while the slot changes (dict.c, "Readers") */
    uint32_t spare;
    /* then key[max_key + 1], val0[max_val], val1[max_val], each rounded up
     * to 8 bytes */
};
static_assert(sizeof(struct dict_slot) == 32, "slot layout");

/* A dict's geometry, derived from its three dimensions. */
struct dict_geom {
    size_t slots, max_key, max_val;
    size_t key_room, val_room; /* bytes for a key (with its NUL), a value */
    size_t stride;             /* bytes per slot */
    size_t stripes;            /* a power of two */
    size_t stripes_off, slots_off, size;
};

static inline size_t dict_round8(size_t x)
{
    return (x + 7) & ~(size_t)7;
}

/* The geometry of a dict of these dimensions (checked by the caller to be
 * at most DICT_DIM_MAX each, so nothing overflows). */
static inline void dict_geometry(struct dict_geom *g, size_t slots, size_t max_key, size_t max_val)
{
    g->slots = slots;
    g->max_key = max_key;
    g->max_val = max_val;
    g->key_room = dict_round8(max_key + 1);
    g->val_room = dict_round8(max_val);
    g->stride = sizeof(struct dict_slot) + g->key_room + 2 * g->val_room;
    g->stripes = 1;
    while (g->stripes < slots && g->stripes < 256)
        g->stripes *= 2;
    g->stripes_off = FIPC_CACHELINE;
    g->slots_off = g->stripes_off + g->stripes * FIPC_CACHELINE;
    g->size = g->slots_off + slots * g->stride;
}

#endif
