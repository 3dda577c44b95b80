/*
 * test_hooks.c - seams for fipc's own tests (test_hooks.h).  Built only
 * into the uninstalled test library, never into libfipc.
 */
#include "jqueue_impl.h"
#include "lock_impl.h"
#include "ring_mpmc.h"
#include "ring_spsc.h"
#include "test_hooks.h"
#include "uring.h"

void fipc__queue_rebase(struct fipc_queue *q, uint64_t pos)
{
    const struct geom g = geom_of(q);
    q->head = q->tail = q->head_cache = pos;
    q->end = 0;
    for (uint64_t i = 0; i < q->ring; i++)
        slot_at(&g, pos + i)->seq = turn(pos + i);
}

int fipc__queue_spsc_put_late(struct fipc_queue *q, const struct iovec *items, size_t n,
                              fipc_jqueue *owner, void (*between)(void *), void *arg)
{
    const struct geom *view = fipc__queue_view(q);
    if (!view || !view->spsc)
        return -EINVAL;
    const struct geom g = *view;
    struct fipc__put_claim c = {.g = view};
    if (spsc_put_claim(q, &g, view, n, &c.claim) == 0)
        return -EAGAIN;
    if (owner)
        fipc__jqueue_count(owner, &c);
    spsc_put_copy(&g, &c.claim, items);
    spsc_put_publish(&g, &c.claim);
    if (between)
        between(arg);
    /* One message and no owner: the confirm of fipc_queue_put's fast
     * path, which settles through a function of its own. */
    if (c.claim.k == 1 && !owner) {
        int r = spsc_put_confirm_one(q, c.claim.pos);
        return r < 0 ? r : 1;
    }
    int r = spsc_put_confirm(q, &c.claim);
    if (owner)
        fipc__jqueue_counted(owner, &c, r);
    return r;
}

int fipc__queue_mpmc_get_claim_only(struct fipc_queue *q, size_t n)
{
    const struct geom *g = fipc__queue_view(q);
    struct queue_claim c;
    return g ? mpmc_get_claim(q, g, n, &c) : -EINVAL;
}

int fipc__queue_mpmc_get_claim_release_some(struct fipc_queue *q, size_t n, size_t released)
{
    const struct geom *g = fipc__queue_view(q);
    struct queue_claim c;
    int r = g ? mpmc_get_claim(q, g, n, &c) : -EINVAL;
    if (r > 0)
        ring_release(g, c.pos, released < c.k ? released : c.k);
    return r;
}

void fipc__lock_force_no_robust_list(void)
{
    /* relaxed: read by this process's threads (and inherited by children)
     * only after it returns, in program order or through thread creation. */
    store_relaxed(&fipc__lock_no_robust_list, true);
}

uint64_t fipc__lock_owner_check_count(void)
{
    return load_relaxed(&fipc__lock_owner_checks); /* a statistic */
}

void fipc__uring_pretend_unsupported(bool on)
{
    /* relaxed: read by the same test's calls (uring.c). */
    store_relaxed(&fipc__uring_unsupported, on);
}
