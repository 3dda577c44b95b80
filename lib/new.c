/*
 * new.c - the _new and _create constructors: arena memory plus _init.
 *
 * The objects know nothing of arenas: each is set up by an _init on memory
 * its caller provides (a struct of its own, or the queues' footprint +
 * init), and this layer, above both the arena and the objects, puts them
 * together.  A fixed-size object is set up in a local copy first, so that
 * arguments _init refuses cost no arena memory (the arena never frees);
 * objects hold no pointers, so the copy is the object.
 */
#include <string.h>

#include <fipc.h>

#include "compiler.h"
#include "dict_impl.h"
#include "jqueue_impl.h"
#include "queue_impl.h"
#include "value_impl.h"

/* Bytes from arena a, or from the default arena for NULL. */
static void *alloc(fipc_arena *a, size_t size, size_t align)
{
    if (!a && !(a = fipc_default_arena()))
        return NULL;
    return fipc_arena_alloc(a, size, align);
}

/* A copy of the set-up object obj in arena a, or NULL if it is full. */
static void *place(fipc_arena *a, const void *obj, size_t size, size_t align)
{
    void *p = alloc(a, size, align);
    if (p)
        memcpy(p, obj, size);
    return p;
}

fipc_lock *fipc_lock_new(fipc_arena *a)
{
    fipc_lock l;
    fipc_lock_init(&l);
    return place(a, &l, sizeof l, FIPC_CACHELINE);
}

fipc_rlock *fipc_rlock_new(fipc_arena *a)
{
    fipc_rlock l;
    fipc_rlock_init(&l);
    return place(a, &l, sizeof l, FIPC_CACHELINE);
}

fipc_sem *fipc_sem_new(fipc_arena *a, uint32_t value)
{
    fipc_sem s;
    return fipc_sem_init(&s, value) < 0 ? NULL : place(a, &s, sizeof s, FIPC_CACHELINE);
}

fipc_sem *fipc_sem_new_bounded(fipc_arena *a, uint32_t value)
{
    fipc_sem s;
    return fipc_sem_init_bounded(&s, value) < 0 ? NULL : place(a, &s, sizeof s, FIPC_CACHELINE);
}

fipc_event *fipc_event_new(fipc_arena *a)
{
    fipc_event e;
    fipc_event_init(&e);
    return place(a, &e, sizeof e, 8);
}

fipc_cond *fipc_cond_new(fipc_arena *a)
{
    fipc_cond c;
    fipc_cond_init(&c);
    return place(a, &c, sizeof c, 8);
}

fipc_barrier *fipc_barrier_new(fipc_arena *a, uint32_t parties)
{
    fipc_barrier b;
    return fipc_barrier_init(&b, parties) < 0 ? NULL : place(a, &b, sizeof b, 8);
}

/* Memory for a queue of size bytes in *mem: 0, or -ENOMEM when the arena
 * is full. */
static int reserve(void **mem, fipc_arena *a, size_t size)
{
    *mem = alloc(a, size, FIPC_CACHELINE);
    return *mem ? 0 : -ENOMEM;
}

int fipc_queue_create(fipc_queue **out, fipc_arena *a, size_t capacity, size_t max_item,
                      unsigned flags)
{
    size_t size;
    void *mem;
    int r = out ? fipc__queue_footprint(&size, capacity, max_item, flags) : -EINVAL;
    if (r == 0 && (r = reserve(&mem, a, size)) == 0)
        *out = fipc__queue_init(mem, capacity, max_item, flags);
    return r;
}

int fipc_jqueue_create(fipc_jqueue **out, fipc_arena *a, size_t capacity, size_t max_item,
                       unsigned flags)
{
    size_t size;
    void *mem;
    int r = out ? fipc__jqueue_footprint(&size, capacity, max_item, flags) : -EINVAL;
    if (r == 0 && (r = reserve(&mem, a, size)) == 0)
        *out = fipc__jqueue_init(mem, capacity, max_item, flags);
    return r;
}

int fipc_value_new(fipc_value **out, fipc_arena *a, int64_t init)
{
    if (!out)
        return -EINVAL;
    struct fipc_value *v = alloc(a, sizeof *v, FIPC_CACHELINE);
    if (!v)
        return -ENOMEM;
    /* Arena memory comes zeroed, and nobody else knows v before *out. */
    v->word = init;
    fipc_lock_init(&v->lock);
    *out = v;
    return 0;
}

int fipc_value_new_double(fipc_value_d **out, fipc_arena *a, double init)
{
    if (!out)
        return -EINVAL;
    struct fipc_value_d *v = alloc(a, sizeof *v, FIPC_CACHELINE);
    if (!v)
        return -ENOMEM;
    memcpy(&v->bits, &init, sizeof init);
    fipc_lock_init(&v->lock);
    *out = v;
    return 0;
}

int fipc_array_new(fipc_array **out, fipc_arena *a, size_t elem_size, size_t n)
{
    if (!out || elem_size == 0 || n == 0)
        return -EINVAL;
    if (n > (SIZE_MAX - ARRAY_HEADER) / elem_size)
        return -ENOMEM;
    struct fipc_array *arr = alloc(a, ARRAY_HEADER + elem_size * n, FIPC_CACHELINE);
    if (!arr)
        return -ENOMEM;
    /* The elements are zero: the arena hands out fresh zeroed pages. */
    arr->magic = ARRAY_MAGIC;
    arr->elem_size = elem_size;
    arr->n = n;
    fipc_lock_init(&arr->lock);
    *out = arr;
    return 0;
}

int fipc_dict_create(fipc_dict **out, fipc_arena *a, size_t max_keys, size_t max_key,
                     size_t max_val)
{
    if (!out || max_keys == 0 || max_key == 0 || max_val == 0 || max_keys > DICT_DIM_MAX ||
        max_key >= DICT_DIM_MAX || max_val >= DICT_DIM_MAX)
        return -EINVAL;
    struct dict_geom g;
    dict_geometry(&g, max_keys, max_key, max_val);
    struct dict_header *h = alloc(a, g.size, FIPC_CACHELINE);
    if (!h)
        return -ENOMEM;
    /* Arena memory comes zeroed: every slot is SLOT_EMPTY. */
    for (size_t s = 0; s < g.stripes; s++)
        fipc_lock_init((fipc_lock *)((char *)h + g.stripes_off + s * FIPC_CACHELINE));
    h->max_keys = max_keys;
    h->max_key = max_key;
    h->max_val = max_val;
    h->magic = DICT_MAGIC;
    *out = (fipc_dict *)h;
    return 0;
}
