/*
 * dict.c - a dict in shared memory: open addressing over striped robust
 * locks, with double-buffered values.
 *
 * Layout (dict_impl.h): a header with the three dimensions, one lock per
 * stripe (a power of two, at most 256, each on its own cache line), then
 * max_keys slots.  A key's hash picks its first slot (hash % slots, then
 * linear probing) and its stripe (hash & (stripes - 1)).  Every call on a
 * key holds that key's stripe lock, so the slot that holds the key, once
 * found, changes only under the lock the caller holds.
 *
 *   state                 meaning                     changed by
 *   SLOT_EMPTY            never used                  (creation)
 *   SLOT_CLAIMED | s<<8   being filled with a new key set, under stripe s,
 *                         of stripe s                 by CAS from EMPTY/TOMB
 *   SLOT_USED             holds a key                 that set (release)
 *   SLOT_TOMB             free again                  delete, or the repair
 *                                                     of a dead set's claim
 *
 * A slot never returns to EMPTY, so a probe for a key may stop at the
 * first EMPTY slot: when the key was inserted, every slot between its first
 * slot and its own was in use, and stays so.  A set of a new key claims
 * the first EMPTY or TOMB slot of the probe by CAS (another stripe may
 * claim the same slot at the same time); the probe skips CLAIMED slots.
 *
 * Probing reads slots of other stripes while they change.  A slot counts
 * as holding one of our keys only if it is USED (acquire: pairs with the
 * release that made it USED, after its key was written) and then its hash
 * is ours: only our stripe writes our hash, and we hold its lock, so such a
 * slot stays as it is until we let go; a slot of another stripe never
 * shows our hash, whatever it is doing meanwhile.
 *
 * Values.  Each slot holds two values and cur says which is current.  A set
 * of an existing key (and an update) writes the other one, then switches
 * cur with one release store: a process killed before the switch leaves
 * the old value, after it the new one.  Readers hold the stripe lock, so
 * they never see a value being written.
 *
 * Death.  A set killed between its claim and its commit leaves a slot
 * CLAIMED with its stripe: the next holder of that stripe's lock gets
 * -EOWNERDEAD and turns every such slot into a TOMB.  Nothing else needs
 * repair: every other change is one store.
 *
 * Hostile peers.  A call derives the geometry from the header's three
 * dimensions and checks that the whole dict lies inside an arena this
 * process maps (kept per thread, re-checked when the dict or the arena
 * mappings change); every length read from a slot is checked against the
 * dimensions (-EPROTO), the current value's index is masked, and every
 * probe visits each slot at most once.
 */
#include <stdlib.h>
#include <string.h>

#include <fipc/dict.h>

#include "arena_impl.h"
#include "atomic.h"
#include "dict_impl.h"

/* This thread's checked geometry of the dict it used last. */
static __thread struct {
    const void *d;
    uint32_t epoch;
    struct dict_geom g;
} view;

static const struct dict_geom *geom_of(const fipc_dict *d)
{
    /* relaxed: any change of this process's mappings moves the epoch. */
    uint32_t epoch = load_relaxed(&fipc__arena_epoch);
    if (view.d == d && view.epoch == epoch)
        return &view.g;
    const struct dict_header *h = (const struct dict_header *)d;
    const char *end;
    if (!fipc__arena_bounds(h, sizeof *h, &end))
        return NULL;
    /* relaxed: written once, before the dict was published. */
    uint64_t magic = load_relaxed(&h->magic), slots = load_relaxed(&h->max_keys);
    uint64_t max_key = load_relaxed(&h->max_key), max_val = load_relaxed(&h->max_val);
    if (magic != DICT_MAGIC || slots == 0 || slots > DICT_DIM_MAX || max_key == 0 ||
        max_key >= DICT_DIM_MAX || max_val == 0 || max_val >= DICT_DIM_MAX)
        return NULL;
    struct dict_geom g;
    dict_geometry(&g, slots, max_key, max_val);
    if (!fipc__arena_bounds(h, g.size, &end))
        return NULL;
    view.d = d;
    view.epoch = epoch;
    view.g = g;
    return &view.g;
}

static uint32_t hash_key(const char *key, size_t len)
{
    uint32_t h = 2166136261u; /* FNV-1a */
    for (size_t i = 0; i < len; i++)
        h = (h ^ (unsigned char)key[i]) * 16777619u;
    return h;
}

static fipc_lock *stripe_lock(fipc_dict *d, const struct dict_geom *g, uint32_t s)
{
    return (fipc_lock *)((char *)d + g->stripes_off + (size_t)s * FIPC_CACHELINE);
}

static struct dict_slot *slot_at(fipc_dict *d, const struct dict_geom *g, size_t i)
{
    return (struct dict_slot *)((char *)d + g->slots_off + i * g->stride);
}

static char *slot_key(struct dict_slot *s)
{
    return (char *)(s + 1);
}

static char *slot_val(struct dict_slot *s, const struct dict_geom *g, uint32_t which)
{
    return slot_key(s) + g->key_room + (which & 1) * g->val_room;
}

/* One call on one key: its dict, geometry, hash and stripe. */
struct op {
    fipc_dict *d;
    const struct dict_geom *g;
    const char *key;
    size_t klen;
    uint32_t hash, stripe;
};

static int op_begin(struct op *o, fipc_dict *d, const char *key)
{
    if (!d || !key)
        return -EINVAL;
    if (!(o->g = geom_of(d)))
        return -EPROTO;
    o->d = d;
    o->key = key;
    o->klen = strnlen(key, o->g->max_key + 1);
    if (o->klen > o->g->max_key)
        return -EMSGSIZE;
    o->hash = hash_key(key, o->klen);
    o->stripe = o->hash & (uint32_t)(o->g->stripes - 1);
    return 0;
}

/* The slots that a set of stripe s claimed and never committed: free. */
static void repair_stripe(fipc_dict *d, const struct dict_geom *g, uint32_t s)
{
    uint32_t claimed = SLOT_CLAIMED | s << 8;
    for (size_t i = 0; i < g->slots; i++) {
        struct dict_slot *sl = slot_at(d, g, i);
        uint32_t want = claimed;
        /* relaxed: the slot carries nothing once it is a TOMB; the CAS
         * keeps us from undoing a change another stripe made meanwhile. */
        cas_relaxed(&sl->state, &want, SLOT_TOMB);
    }
}

static int lock_stripe(fipc_dict *d, const struct dict_geom *g, uint32_t s)
{
    int r = fipc_lock_acquire(stripe_lock(d, g, s), FIPC_FOREVER);
    if (r == -EOWNERDEAD) {
        repair_stripe(d, g, s);
        r = 0;
    }
    return r == -EDEADLK ? -EINVAL : r; /* called from inside update's fn */
}

static void unlock_stripe(fipc_dict *d, const struct dict_geom *g, uint32_t s)
{
    fipc_lock_release(stripe_lock(d, g, s));
}

/* The slot holding o's key, or NULL; *free receives the first slot a new
 * key could claim (EMPTY or TOMB) before the probe ended, or SIZE_MAX.
 * Under o's stripe lock. */
static struct dict_slot *find(const struct op *o, size_t *free)
{
    const struct dict_geom *g = o->g;
    size_t start = o->hash % g->slots;
    *free = SIZE_MAX;
    for (size_t j = 0; j < g->slots; j++) {
        size_t i = (start + j) % g->slots;
        struct dict_slot *s = slot_at(o->d, g, i);
        /* acquire: pairs with the release that made the slot USED, after
         * its key and hash were written. */
        uint32_t st = load_acquire(&s->state);
        if (st == SLOT_EMPTY || st == SLOT_TOMB) {
            if (*free == SIZE_MAX)
                *free = i;
            if (st == SLOT_EMPTY)
                return NULL;
            continue;
        }
        /* relaxed: ordered after the acquire above; only our stripe writes
         * our hash (see the top of the file). */
        if (st != SLOT_USED || load_relaxed(&s->hash) != o->hash)
            continue;
        if (load_relaxed(&s->klen) == o->klen && memcmp(slot_key(s), o->key, o->klen) == 0)
            return s;
    }
    return NULL;
}

/* Claim a slot for o's new key, from the first free one the probe saw:
 * the first EMPTY or TOMB slot from there on whose CAS succeeds.  NULL when
 * every slot is taken. */
static struct dict_slot *claim(const struct op *o, size_t from)
{
    const struct dict_geom *g = o->g;
    if (from == SIZE_MAX)
        return NULL;
    size_t start = o->hash % g->slots, first = (from + g->slots - start) % g->slots;
    for (size_t j = first; j < g->slots; j++) {
        struct dict_slot *s = slot_at(o->d, g, (start + j) % g->slots);
        /* relaxed: the CAS decides; what we write after it is published by
         * the release that makes the slot USED. */
        uint32_t st = load_relaxed(&s->state);
        while (st == SLOT_EMPTY || st == SLOT_TOMB)
            if (cas_relaxed(&s->state, &st, SLOT_CLAIMED | o->stripe << 8))
                return s;
    }
    return NULL;
}

static void put_value(struct dict_slot *s, const struct dict_geom *g, uint32_t which,
                      const void *val, size_t len)
{
    if (len)
        memcpy(slot_val(s, g, which), val, len);
    store_relaxed(&s->vlen[which & 1], (uint32_t)len);
}

static int set_locked(const struct op *o, const void *val, size_t len)
{
    size_t free;
    struct dict_slot *s = find(o, &free);
    if (s) {
        /* relaxed: ours under the lock. */
        uint32_t next = (load_relaxed(&s->cur) & 1) ^ 1;
        put_value(s, o->g, next, val, len);
        /* release: the commit; readers take the lock, so this orders the
         * value for a process that reads the dict without it (a peer
         * checking consistency after our death). */
        store_release(&s->cur, next);
        return 0;
    }
    if (!(s = claim(o, free)))
        return -ENOSPC;
    store_relaxed(&s->hash, o->hash);
    store_relaxed(&s->klen, (uint32_t)o->klen);
    memcpy(slot_key(s), o->key, o->klen);
    slot_key(s)[o->klen] = '\0';
    put_value(s, o->g, 0, val, len);
    store_relaxed(&s->cur, 0);
    /* release: pairs with find's acquire; the key, hash and value first. */
    store_release(&s->state, SLOT_USED);
    return 0;
}

int fipc_dict_set(fipc_dict *d, const char *key, const void *val, size_t len)
{
    struct op o;
    int r = op_begin(&o, d, key);
    if (r < 0)
        return r;
    if (!val && len > 0)
        return -EINVAL;
    if (len > o.g->max_val)
        return -EMSGSIZE;
    if ((r = lock_stripe(d, o.g, o.stripe)) < 0)
        return r;
    r = set_locked(&o, val, len);
    unlock_stripe(d, o.g, o.stripe);
    return r;
}

/* The current value of s: its length, or -EPROTO. */
static int current(const struct dict_slot *s, const struct dict_geom *g, uint32_t *which)
{
    /* relaxed: under the lock of the slot's stripe. */
    *which = load_relaxed(&s->cur) & 1;
    uint32_t len = load_relaxed(&s->vlen[*which]);
    return len <= g->max_val ? (int)len : -EPROTO;
}

int fipc_dict_get(fipc_dict *d, const char *key, void *buf, size_t cap, size_t *len)
{
    struct op o;
    int r = op_begin(&o, d, key);
    if (r < 0)
        return r;
    if (!len || (!buf && cap > 0))
        return -EINVAL;
    if ((r = lock_stripe(d, o.g, o.stripe)) < 0)
        return r;
    size_t free;
    uint32_t which;
    struct dict_slot *s = find(&o, &free);
    if (!s)
        r = -ENOENT;
    else if ((r = current(s, o.g, &which)) >= 0) {
        *len = (size_t)r;
        if ((size_t)r > cap) {
            r = -EMSGSIZE;
        } else {
            memcpy(buf, slot_val(s, o.g, which), (size_t)r);
            r = 0;
        }
    }
    unlock_stripe(d, o.g, o.stripe);
    return r;
}

int fipc_dict_delete(fipc_dict *d, const char *key)
{
    struct op o;
    int r = op_begin(&o, d, key);
    if (r < 0)
        return r;
    if ((r = lock_stripe(d, o.g, o.stripe)) < 0)
        return r;
    size_t free;
    struct dict_slot *s = find(&o, &free);
    if (s)
        store_release(&s->state, SLOT_TOMB); /* release: as set's commit */
    unlock_stripe(d, o.g, o.stripe);
    return s ? 0 : -ENOENT;
}

int fipc_dict_len(fipc_dict *d)
{
    if (!d)
        return -EINVAL;
    const struct dict_geom *g = geom_of(d);
    if (!g)
        return -EPROTO;
    int n = 0;
    for (size_t i = 0; i < g->slots; i++)
        /* relaxed: a snapshot. */
        n += load_relaxed(&slot_at(d, g, i)->state) == SLOT_USED;
    return n;
}

int fipc_dict_update(fipc_dict *d, const char *key, int (*fn)(void *val, size_t *len, void *arg),
                     void *arg)
{
    struct op o;
    int r = op_begin(&o, d, key);
    if (r < 0)
        return r;
    if (!fn)
        return -EINVAL;
    if ((r = lock_stripe(d, o.g, o.stripe)) < 0)
        return r;
    size_t free;
    uint32_t which;
    struct dict_slot *s = find(&o, &free);
    if (!s) {
        r = -ENOENT;
    } else if ((r = current(s, o.g, &which)) >= 0) {
        /* fn works on the other buffer, in place: nothing changes until
         * the switch of cur. */
        char *next = slot_val(s, o.g, which ^ 1);
        memmove(next, slot_val(s, o.g, which), (size_t)r);
        size_t len = (size_t)r;
        r = fn(next, &len, arg);
        if (r == 0 && len > o.g->max_val)
            r = -EMSGSIZE;
        if (r == 0) {
            store_relaxed(&s->vlen[which ^ 1], (uint32_t)len);
            store_release(&s->cur, which ^ 1); /* release: as set's commit */
        }
    }
    unlock_stripe(d, o.g, o.stripe);
    return r;
}

int fipc_dict_foreach(fipc_dict *d,
                      int (*fn)(const char *key, const void *val, size_t len, void *arg), void *arg)
{
    if (!d || !fn)
        return -EINVAL;
    const struct dict_geom *g = geom_of(d);
    if (!g)
        return -EPROTO;
    /* A private copy: fn runs without the lock, and may call the dict. */
    struct dict_geom gc = *g;
    char *key = malloc(gc.key_room + gc.val_room);
    if (!key)
        return -ENOMEM;
    char *val = key + gc.key_room;
    int r = 0;
    for (size_t i = 0; i < gc.slots && r == 0; i++) {
        struct dict_slot *s = slot_at(d, &gc, i);
        /* relaxed: a hint; checked again under the lock. */
        if (load_relaxed(&s->state) != SLOT_USED)
            continue;
        uint32_t stripe = load_relaxed(&s->hash) & (uint32_t)(gc.stripes - 1);
        if ((r = lock_stripe(d, &gc, stripe)) < 0)
            break;
        int len = -1;
        uint32_t which;
        /* Still USED and of this stripe: stable while we hold its lock. */
        if (load_acquire(&s->state) == SLOT_USED &&
            (load_relaxed(&s->hash) & (uint32_t)(gc.stripes - 1)) == stripe) {
            uint32_t klen = load_relaxed(&s->klen);
            if (klen > gc.max_key || (len = current(s, &gc, &which)) < 0) {
                r = -EPROTO;
            } else {
                memcpy(key, slot_key(s), klen);
                key[klen] = '\0';
                memcpy(val, slot_val(s, &gc, which), (size_t)len);
            }
        }
        unlock_stripe(d, &gc, stripe);
        if (r == 0 && len >= 0)
            r = fn(key, val, (size_t)len, arg);
    }
    free(key);
    return r;
}
