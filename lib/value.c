/*
 * value.c - Value (int64_t and double) and Array in shared memory.
 *
 * A value is one 64-bit word, changed only by atomic read-modify-writes or
 * stores, so any process may read it at any time and a process killed in
 * the middle of a call leaves either the old value or the new one.  The
 * double flavour keeps the bits of a double in the word and adds by
 * compare-and-swap.  Each object carries a fipc_lock, on a cache line of
 * its own so that taking it does not slow down the adds of others.
 *
 * An array's header (element size and count) is written once, at creation;
 * a peer may overwrite it, so every call that derives an address or a size
 * from it checks that the elements lie inside an arena this process has
 * mapped (fipc__arena_bounds), and refuses the header otherwise.
 */
#include <string.h>

#include <fipc/value.h>

#include "arena_impl.h"
#include "atomic.h"
#include "value_impl.h"

int64_t fipc_value_get(const fipc_value *v)
{
    if (!v)
        return 0;
    /* acquire: pairs with the release of set or add, so that what their
     * caller wrote before is visible after this read. */
    return load_acquire(&v->word);
}

int fipc_value_set(fipc_value *v, int64_t x)
{
    if (!v)
        return -EINVAL;
    /* release: pairs with the acquire of get. */
    store_release(&v->word, x);
    return 0;
}

int64_t fipc_value_add(fipc_value *v, int64_t delta)
{
    if (!v)
        return 0;
    /* acq_rel: a release of what the caller wrote before (pairs with get),
     * and an acquire of the adds before it.  Unsigned, so that overflow
     * wraps instead of being undefined. */
    uint64_t *w = (uint64_t *)&v->word;
    return (int64_t)(fetch_add_acqrel(w, (uint64_t)delta) + (uint64_t)delta);
}

fipc_lock *fipc_value_lock(fipc_value *v)
{
    return v ? &v->lock : NULL;
}

static double bits_to_double(uint64_t b)
{
    double d;
    memcpy(&d, &b, sizeof d);
    return d;
}

static uint64_t double_to_bits(double d)
{
    uint64_t b;
    memcpy(&b, &d, sizeof b);
    return b;
}

double fipc_value_d_get(const fipc_value_d *v)
{
    if (!v)
        return 0.0;
    /* acquire: pairs with the release of set or add, as for fipc_value. */
    return bits_to_double(load_acquire(&v->bits));
}

int fipc_value_d_set(fipc_value_d *v, double x)
{
    if (!v)
        return -EINVAL;
    /* release: pairs with the acquire of get. */
    store_release(&v->bits, double_to_bits(x));
    return 0;
}

double fipc_value_d_add(fipc_value_d *v, double delta)
{
    if (!v)
        return 0.0;
    /* relaxed: the CAS below re-reads the word on failure. */
    uint64_t old = load_relaxed(&v->bits), new;
    /* Lock-free: a CAS fails only because another add or set succeeded. */
    do {
        new = double_to_bits(bits_to_double(old) + delta);
    } while (!cas_acqrel(&v->bits, &old, new)); /* acq_rel: as fipc_value_add */
    return bits_to_double(new);
}

fipc_lock *fipc_value_d_lock(fipc_value_d *v)
{
    return v ? &v->lock : NULL;
}

/* Whether arr's header describes elements that lie inside an arena this
 * process maps; *bytes receives their size. */
static bool array_sane(const fipc_array *arr, size_t *bytes)
{
    if (!arr)
        return false;
    /* relaxed: fixed at creation, published with the array itself. */
    uint64_t magic = load_relaxed(&arr->magic);
    uint64_t es = load_relaxed(&arr->elem_size), n = load_relaxed(&arr->n);
    const char *end;
    if (magic != ARRAY_MAGIC || es == 0 || n == 0 || n > SIZE_MAX / es)
        return false;
    *bytes = (size_t)(es * n);
    return fipc__arena_bounds(arr, ARRAY_HEADER + *bytes, &end);
}

void *fipc_array_data(fipc_array *arr)
{
    size_t bytes;
    return array_sane(arr, &bytes) ? (char *)arr + ARRAY_HEADER : NULL;
}

size_t fipc_array_len(const fipc_array *arr)
{
    size_t bytes;
    return array_sane(arr, &bytes) ? (size_t)load_relaxed(&arr->n) : 0;
}

size_t fipc_array_elem_size(const fipc_array *arr)
{
    size_t bytes;
    return array_sane(arr, &bytes) ? (size_t)load_relaxed(&arr->elem_size) : 0;
}

fipc_lock *fipc_array_lock(fipc_array *arr)
{
    return arr ? &arr->lock : NULL;
}
