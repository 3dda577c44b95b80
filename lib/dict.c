/*
 * dict.c - a dict in shared memory: open addressing over striped robust
 * locks, with double-buffered values.
 *
 * Layout (dict_impl.h): a header with the three dimensions, one lock per
 * stripe (a power of two, at most 256, each on its own cache line), then
 * max_keys slots.  A key's hash picks its first slot (its high 24 bits
 * scaled onto [0, slots), then linear probing) and its stripe (hash &
 * (stripes - 1)).  Every call on a key but get holds that key's stripe
 * lock, so the slot that holds the key, once found, changes only under the
 * lock the caller holds; get reads without it (see "Readers").
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
 * cur with one store: a process killed before the switch leaves the old
 * value, after it the new one.
 *
 * Readers.  A get takes no lock: each slot has a sequence count, seq, odd
 * while the slot's owner changes it (the holder of its stripe's lock, or
 * the claimer of a free slot), a seqlock:
 *
 *   writer (change_begin/end)          reader (get_fast)
 *   store seq odd           relaxed    load seq, even         acquire  A1
 *   fence                   release F1 loads of the slot      relaxed
 *   stores of the change    relaxed    fence                  acquire  F2
 *   store seq + 1 (even)    release R1 load seq, unchanged    relaxed
 *
 * A1 pairs with R1: the slot as the last finished change left it.  F2
 * pairs with F1: a reader whose loads saw any store of a later change
 * sees that change's odd count (or a later one) at its second look, and
 * retries.  So a reader that sees seq even and unchanged copied one
 * state: its key, cur, the length and the value together.  The value
 * buffer a change fills is not the current one; it is written before the
 * change begins, after a release fence of its own (pairs with F2 too): a
 * reader still copying that buffer, which was current before the last
 * change, loads one of those stores and sees seq moved.  Delete and the
 * filling of a claimed slot are changes too, so a slot reused for another
 * key moves seq under a reader that compared the old key; a claim's CAS is
 * acquire and delete's TOMB a release, so the deleter's change of seq
 * comes before the claimer's.  The reader skips slots whose hash or key
 * differ without a second look: that slot was not ours at the moment of
 * its first look, and a probe for a key that stays put finds it.
 *
 * The reader's loads of keys and values are relaxed atomic loads of whole
 * words (slots and their rooms are 8-byte aligned, rounded to 8 bytes),
 * and set writes keys and values with relaxed word stores, so a racing
 * copy is no data race in C11 terms (a memcpy racing with a store would
 * be); it copies the words into the caller's buffer, and a copy the second
 * look rejects is overwritten by the next try.  update's fn writes the
 * other buffer with plain stores: the only readers of those bytes are
 * finishing a look that the change before ours already doomed, and their
 * loads are atomic, so the compiler cannot tear or re-read them.  A slot
 * seen odd (changing) with our hash, or changed, ends the look (an odd one
 * of another hash is skipped: it holds no key of ours, as the probe under
 * the lock says of other hashes); after 8 looks get takes the lock and
 * probes as the other calls do, which waits for a busy writer and repairs
 * after a dead one.
 *
 * Death.  A set killed between its claim and its commit leaves a slot
 * CLAIMED with its stripe: the next holder of that stripe's lock gets
 * -EOWNERDEAD and turns every such slot into a TOMB.  A change cut short
 * leaves seq odd (readers then take the lock); the same repair ends it (a
 * CAS to seq + 1 on the stripe's slots), since double buffering left the
 * slot consistent.  Every other change is one store.
 *
 * Hostile peers.  A call derives the geometry from the header's three
 * dimensions and checks that the whole dict lies inside an arena this
 * process maps (kept per thread, re-checked when the dict or the arena
 * mappings change); every length read from a slot is checked against the
 * dimensions (-EPROTO), the current value's index is masked, and every
 * probe visits each slot at most once.  A lock-free get checks the lengths
 * it read before it copies (the key's against ours, the value's against
 * max_val and the caller's cap), and a seq that a peer overwrote only
 * sends gets to the lock.
 */
#include <stdlib.h>
#include <string.h>

#include <fipc/dict.h>

#include "arena_impl.h"
#include "atomic.h"
#include "dict_impl.h"
#include "lock_impl.h"

/* This thread's checked geometry of the dict it used last.  initial-exec,
 * as lock.c's record: in the shared library a plain thread-local costs a
 * call to __tls_get_addr on every call. */
static _Thread_local struct {
    const void *d;
    uint32_t epoch;
    struct dict_geom g;
} view __attribute__((tls_model("initial-exec")));

static FIPC_NOINLINE const struct dict_geom *geom_check(const fipc_dict *d, uint32_t epoch)
{
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

static FIPC_ALWAYS_INLINE const struct dict_geom *geom_of(const fipc_dict *d)
{
    /* relaxed: any change of this process's mappings moves the epoch. */
    uint32_t epoch = load_relaxed(&fipc__arena_epoch);
    if (FIPC_LIKELY(view.d == d && view.epoch == epoch))
        return &view.g;
    return geom_check(d, epoch);
}

/* Word-at-a-time access to keys and values.  Slots, keys and values start
 * on 8-byte boundaries (dict_impl.h), so a slot's bytes are read and
 * written as whole 64-bit words; a caller's bytes are read with memcpy. */
static uint64_t load_word(const void *p)
{
    uint64_t w;
    memcpy(&w, p, 8);
    return w;
}

/* The n < 8 bytes at p, as memcpy into a zeroed word would leave them. */
static uint64_t load_tail(const unsigned char *p, size_t n)
{
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    if (n >= 4) {
        uint32_t lo, hi;
        memcpy(&lo, p, 4);
        memcpy(&hi, p + n - 4, 4);
        return lo | (uint64_t)hi << 8 * (n - 4);
    }
    if (n == 0)
        return 0;
    return p[0] | (uint64_t)p[n >> 1] << 8 * (n >> 1) | (uint64_t)p[n - 1] << 8 * (n - 1);
#else
    uint64_t w = 0;
    memcpy(&w, p, n);
    return w;
#endif
}

/* The first n < 8 bytes of a word, in memory order. */
static uint64_t tail_mask(size_t n)
{
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    return n ? ~UINT64_C(0) >> (64 - 8 * n) : 0;
#else
    return n ? ~UINT64_C(0) << (64 - 8 * n) : 0;
#endif
}

/* Copy n bytes into a slot's 8-aligned room (rounded up to 8 bytes, so
 * the last word's padding is ours), with relaxed word stores: lock-free
 * readers may be loading these words (see "Readers"). */
static void put_words(uint64_t *dst, const unsigned char *src, size_t n)
{
    size_t k = 0;
    for (; k + 8 <= n; k += 8)
        store_relaxed(&dst[k / 8], load_word(src + k));
    if (k < n)
        store_relaxed(&dst[k / 8], load_tail(src + k, n - k));
}

/* Copy n bytes out of a slot's room with relaxed word loads: the words may
 * change meanwhile, which the caller's second look at seq detects. */
static void get_words(unsigned char *dst, const uint64_t *src, size_t n)
{
    size_t k = 0;
    for (; k + 8 <= n; k += 8) {
        uint64_t w = load_relaxed(&src[k / 8]);
        memcpy(dst + k, &w, 8);
    }
    if (k < n) {
        uint64_t w = load_relaxed(&src[k / 8]);
        memcpy(dst + k, &w, n - k);
    }
}

/* A 32-bit hash of the key's words (multiply and xor-shift per word, the
 * finalizer of MurmurHash3's fmix64 at the end), so the stripe's low bits
 * and the first slot's high bits both depend on every byte.  tail is the
 * key's last partial word (zero-padded). */
static uint32_t hash_key(const char *key, size_t len, uint64_t tail)
{
    uint64_t h = len * UINT64_C(0x9e3779b97f4a7c15);
    size_t k = 0;
    for (; k + 8 <= len; k += 8) {
        h = (h ^ load_word(key + k)) * UINT64_C(0x9e3779b97f4a7c15);
        h ^= h >> 32;
    }
    h = (h ^ tail) * UINT64_C(0xff51afd7ed558ccd);
    h ^= h >> 33;
    h *= UINT64_C(0xc4ceb9fe1a85ec53);
    h ^= h >> 33;
    return (uint32_t)h;
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

static uint64_t *slot_words(char *p)
{
    return (uint64_t *)(void *)p;
}

/* One call on one key: its dict, geometry, hash, stripe and first slot. */
struct op {
    fipc_dict *d;
    const struct dict_geom *g;
    const char *key;
    size_t klen;
    uint64_t tail; /* the key's last partial word, zero-padded */
    uint32_t hash, stripe;
    size_t start;
};

static FIPC_ALWAYS_INLINE int op_begin(struct op *o, fipc_dict *d, const char *key)
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
    o->tail = load_tail((const unsigned char *)key + (o->klen & ~(size_t)7), o->klen & 7);
    o->hash = hash_key(key, o->klen, o->tail);
    o->stripe = o->hash & (uint32_t)(o->g->stripes - 1);
    /* The hash's high bits scaled onto [0, slots): no division. */
    o->start = (size_t)(((uint64_t)(o->hash >> 8) * o->g->slots) >> 24);
    return 0;
}

static size_t next_slot(const struct dict_geom *g, size_t i)
{
    return i + 1 == g->slots ? 0 : i + 1;
}

/* Whether slot s holds o's key, given that its klen is o's: word by word,
 * relaxed (a lock-free reader's view may be changing, see "Readers"). */
static bool key_equal(struct dict_slot *s, const struct op *o)
{
    const uint64_t *w = slot_words(slot_key(s));
    size_t k = 0;
    for (; k + 8 <= o->klen; k += 8)
        if (load_relaxed(&w[k / 8]) != load_word(o->key + k))
            return false;
    return (load_relaxed(&w[k / 8]) & tail_mask(o->klen & 7)) == o->tail;
}

/* A change of slot s begins (seq odd) and ends (seq even).  The owner of
 * the slot alone writes seq: the holder of its stripe's lock, or the
 * claimer of a free slot.  (s + 1) | 1 is odd even after a change that a
 * death cut short left seq odd. */
static uint32_t change_begin(struct dict_slot *s)
{
    /* relaxed: the owner's own word; the fence (F1) orders the odd count
     * before every store of the change (pairs with F2: a reader that
     * loads any of them sees seq moved). */
    uint32_t odd = (load_relaxed(&s->seq) + 1) | 1;
    store_relaxed(&s->seq, odd);
    fence_release();
    return odd;
}

static void change_end(struct dict_slot *s, uint32_t odd)
{
    /* release (R1): pairs with A1, get_fast's first load of seq; the
     * change's stores first. */
    store_release(&s->seq, odd + 1);
}

/* After a death under stripe s's lock: the slots that a set of the stripe
 * claimed and never committed become free, and every change of the
 * stripe's slots that the death cut short ends (double buffering left the
 * slot consistent: the old value or the new; a delete, the key gone).  We
 * own the stripe's USED slots and its CLAIMED ones; a TOMB slot with our
 * hash and an odd seq is a dead delete's, which a claimer of another
 * stripe may take meanwhile, so seq changes by CAS: a claimer's change
 * (seq + 2 or more) wins. */
static FIPC_COLD void repair_stripe(fipc_dict *d, const struct dict_geom *g, uint32_t s)
{
    uint32_t claimed = SLOT_CLAIMED | s << 8, mask = (uint32_t)(g->stripes - 1);
    for (size_t i = 0; i < g->slots; i++) {
        struct dict_slot *sl = slot_at(d, g, i);
        /* relaxed, both: the CASes below decide. */
        uint32_t st = load_relaxed(&sl->state), seq = load_relaxed(&sl->seq);
        bool ours = st == claimed ||
                    ((st == SLOT_USED || st == SLOT_TOMB) && (load_relaxed(&sl->hash) & mask) == s);
        /* release: as change_end's. */
        if (ours && (seq & 1))
            cas_release(&sl->seq, &seq, seq + 1);
        /* release: pairs with claim's acquire (our seq first); the CAS
         * keeps us from undoing a change another stripe made meanwhile. */
        if (st == claimed)
            cas_release(&sl->state, &st, SLOT_TOMB);
    }
}

static FIPC_ALWAYS_INLINE int lock_stripe(fipc_dict *d, const struct dict_geom *g, uint32_t s)
{
    int r = fipc__lock_acquire((struct lock_impl *)stripe_lock(d, g, s), FIPC_FOREVER);
    if (FIPC_UNLIKELY(r == -EOWNERDEAD)) {
        repair_stripe(d, g, s);
        r = 0;
    }
    return r == -EDEADLK ? -EINVAL : r; /* called from inside update's fn */
}

static void unlock_stripe(fipc_dict *d, const struct dict_geom *g, uint32_t s)
{
    fipc__lock_release((struct lock_impl *)stripe_lock(d, g, s));
}

/* The slot holding o's key, or NULL; *free receives the first slot a new
 * key could claim (EMPTY or TOMB) before the probe ended, or SIZE_MAX.
 * Under o's stripe lock. */
static struct dict_slot *find(const struct op *o, size_t *free)
{
    const struct dict_geom *g = o->g;
    size_t i = o->start;
    *free = SIZE_MAX;
    for (size_t j = 0; j < g->slots; j++, i = next_slot(g, i)) {
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
        if (load_relaxed(&s->klen) == o->klen && key_equal(s, o))
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
    size_t first = (from + g->slots - o->start) % g->slots, i = from;
    for (size_t j = first; j < g->slots; j++, i = next_slot(g, i)) {
        struct dict_slot *s = slot_at(o->d, g, i);
        /* relaxed: the CAS decides. */
        uint32_t st = load_relaxed(&s->state);
        /* acquire: pairs with the release of delete's TOMB (or of the
         * commit a repair undid), so the previous owner's change of seq
         * comes before ours. */
        while (st == SLOT_EMPTY || st == SLOT_TOMB)
            if (cas_acquire(&s->state, &st, SLOT_CLAIMED | o->stripe << 8))
                return s;
    }
    return NULL;
}

/* Write value `which` of s: not the current one, so readers do not look
 * at it until a change switches cur (they may be finishing a look begun
 * before the last switch: those see seq moved). */
static void put_value(struct dict_slot *s, const struct dict_geom *g, uint32_t which,
                      const void *val, size_t len)
{
    put_words(slot_words(slot_val(s, g, which)), val, len);
    store_relaxed(&s->vlen[which & 1], (uint32_t)len);
}

static int set_locked(const struct op *o, const void *val, size_t len)
{
    size_t free;
    struct dict_slot *s = find(o, &free);
    if (s) {
        /* relaxed: ours under the lock. */
        uint32_t next = (load_relaxed(&s->cur) & 1) ^ 1;
        /* The release fence orders the last change's end (seq even)
         * before the words we write now: a reader still copying the
         * buffer we overwrite, which was current before that change,
         * sees seq moved (pairs with get_fast's acquire fence). */
        fence_release();
        put_value(s, o->g, next, val, len);
        uint32_t seq = change_begin(s);
        /* The commit: one store.  relaxed: published by change_end; the
         * locked readers hold our lock. */
        store_relaxed(&s->cur, next);
        change_end(s, seq);
        return 0;
    }
    if (!(s = claim(o, free)))
        return -ENOSPC;
    uint32_t seq = change_begin(s);
    store_relaxed(&s->hash, o->hash);
    store_relaxed(&s->klen, (uint32_t)o->klen);
    put_words(slot_words(slot_key(s)), (const unsigned char *)o->key, o->klen + 1);
    put_value(s, o->g, 0, val, len);
    store_relaxed(&s->cur, 0);
    /* release: pairs with find's acquire; the key, hash and value first. */
    store_release(&s->state, SLOT_USED);
    change_end(s, seq);
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

/* get_fast's answer when a slot changed under it. */
#define GET_BUSY 1

/* One lock-free look for o's key (see "Readers"): get's answer, or
 * GET_BUSY when a slot of the probe was changing or changed meanwhile. */
static int get_fast(const struct op *o, void *buf, size_t cap, size_t *len)
{
    const struct dict_geom *g = o->g;
    size_t i = o->start;
    for (size_t j = 0; j < g->slots; j++, i = next_slot(g, i)) {
        struct dict_slot *s = slot_at(o->d, g, i);
        /* acquire (A1): pairs with change_end's R1: the slot as the last
         * change that ended left it. */
        uint32_t seq = load_acquire(&s->seq);
        /* A slot that changes is ours to wait for only if it carries our
         * hash: a slot holding our key keeps its hash through every change
         * but a new key's filling, and one being filled with our key
         * holds it only from the filling on.  relaxed: a hint. */
        if (seq & 1) {
            if (load_relaxed(&s->hash) == o->hash)
                return GET_BUSY;
            continue;
        }
        /* relaxed, all: checked by the second look at seq below. */
        uint32_t st = load_relaxed(&s->state);
        if (st == SLOT_EMPTY)
            return -ENOENT;
        if (st != SLOT_USED || load_relaxed(&s->hash) != o->hash ||
            load_relaxed(&s->klen) != o->klen || !key_equal(s, o))
            continue;
        uint32_t which = load_relaxed(&s->cur) & 1;
        uint32_t vlen = load_relaxed(&s->vlen[which]);
        int r = 0;
        if (vlen > g->max_val)
            r = -EPROTO;
        else if (vlen > cap)
            r = -EMSGSIZE;
        else
            get_words(buf, slot_words(slot_val(s, g, which)), vlen);
        /* acquire (F2): pairs with change_begin's F1 (and set_locked's
         * fence): if any load above saw a store of a later change, this
         * load sees that change's odd count or a later one. */
        fence_acquire();
        if (load_relaxed(&s->seq) != seq)
            return GET_BUSY;
        if (r != -EPROTO)
            *len = vlen;
        return r;
    }
    return -ENOENT;
}

/* How many lock-free looks a get makes before it takes the lock. */
#define GET_TRIES 8

int fipc_dict_get(fipc_dict *d, const char *key, void *buf, size_t cap, size_t *len)
{
    struct op o;
    int r = op_begin(&o, d, key);
    if (r < 0)
        return r;
    if (!len || (!buf && cap > 0))
        return -EINVAL;
    for (int t = 0; t < GET_TRIES; t++) {
        if ((r = get_fast(&o, buf, cap, len)) != GET_BUSY)
            return r;
        cpu_relax();
    }
    /* A writer keeps the slot busy, or died inside a change: the lock
     * waits for the one and repairs after the other. */
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
    if (s) {
        uint32_t seq = change_begin(s);
        /* release: pairs with claim's acquire (the next owner's change of
         * seq after ours); find needs none, the slot is free. */
        store_release(&s->state, SLOT_TOMB);
        change_end(s, seq);
    }
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
         * the switch of cur.  The fence as in set_locked: a reader still
         * copying that buffer sees seq moved. */
        fence_release();
        char *next = slot_val(s, o.g, which ^ 1);
        memmove(next, slot_val(s, o.g, which), (size_t)r);
        size_t len = (size_t)r;
        r = fn(next, &len, arg);
        if (r == 0 && len > o.g->max_val)
            r = -EMSGSIZE;
        if (r == 0) {
            store_relaxed(&s->vlen[which ^ 1], (uint32_t)len);
            uint32_t seq = change_begin(s);
            store_relaxed(&s->cur, which ^ 1); /* relaxed: as set's commit */
            change_end(s, seq);
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
