/*
 * queue_pair.cpp - a queue between two processes, from C++.
 *
 * The parent makes an arena and an SPSC queue in it, then forks a child
 * (fipc_process_start) that puts kMessages messages and closes the queue.
 * Message n holds n, then a run of bytes computed from n; lengths vary from
 * 8 to kMaxItem bytes.  The parent gets messages until the queue is closed
 * and drained (-EPIPE), checks that each comes in order with its length,
 * and compares a checksum of every byte it got with the one the child
 * computed over every byte it put.
 *
 * Exits 0 only if all messages arrived, in order, with the child's checksum.
 */
#include <array>
#include <cerrno>
#include <cinttypes>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <memory>
#include <new>

#include <fipc.h>

namespace {

constexpr std::uint64_t kMessages = 100000;
constexpr std::size_t kMaxItem = 64;
constexpr std::int64_t kTimeout = FIPC_SEC(30); // a hung partner fails, never blocks forever

using Message = std::array<unsigned char, kMaxItem>;

// What both processes reach: it lives in the arena, which the child inherits.
struct Shared {
    fipc_queue *queue = nullptr;
    std::uint64_t checksum = 0; // the child's, complete once it has exited
};

// FNV-1a over a stream of bytes.
class Checksum
{
  public:
    void add(const unsigned char *p, std::size_t n)
    {
        for (std::size_t i = 0; i < n; ++i)
            hash_ = (hash_ ^ p[i]) * 0x100000001b3u;
    }
    std::uint64_t value() const
    {
        return hash_;
    }

  private:
    std::uint64_t hash_ = 0xcbf29ce484222325u;
};

// Message n into m; returns its length.
std::size_t make_message(std::uint64_t n, Message &m)
{
    std::memcpy(m.data(), &n, sizeof n);
    std::size_t len = sizeof n + n % (kMaxItem - sizeof n + 1);
    for (std::size_t i = sizeof n; i < len; ++i)
        m[i] = static_cast<unsigned char>(n * 31 + i);
    return len;
}

// The child: put every message, then close the queue (also when a put fails,
// so that the parent's get returns instead of waiting for its timeout).
int producer(void *arg)
{
    auto &shared = *static_cast<Shared *>(arg);
    struct CloseQueue {
        fipc_queue *q;
        ~CloseQueue()
        {
            fipc_queue_close(q);
        }
    } close_at_return{shared.queue};

    Checksum sum;
    Message m{};
    for (std::uint64_t n = 0; n < kMessages; ++n) {
        std::size_t len = make_message(n, m);
        if (int err = fipc_queue_put(shared.queue, m.data(), len, kTimeout); err < 0) {
            std::fprintf(stderr, "child: put %" PRIu64 ": %s\n", n, fipc_strerror(err));
            return 1;
        }
        sum.add(m.data(), len);
    }
    shared.checksum = sum.value();
    return 0;
}

struct CloseArena {
    void operator()(fipc_arena *a) const
    {
        fipc_arena_close(a);
    }
};
struct FreeProcess {
    void operator()(fipc_process *p) const
    {
        fipc_process_free(p);
    }
};

int fail(const char *what, int err)
{
    std::fprintf(stderr, "queue_pair: %s: %s\n", what, fipc_strerror(err));
    return 1;
}

} // namespace

int main()
{
    fipc_arena *raw_arena = nullptr;
    if (int err = fipc_arena_create(&raw_arena, "queue_pair", 1 << 20); err < 0)
        return fail("fipc_arena_create", err);
    std::unique_ptr<fipc_arena, CloseArena> arena(raw_arena);

    void *mem = fipc_arena_alloc(arena.get(), sizeof(Shared), alignof(Shared));
    if (mem == nullptr)
        return fail("fipc_arena_alloc", -ENOMEM);
    auto *shared = new (mem) Shared;
    if (int err = fipc_queue_create(&shared->queue, arena.get(), 256, kMaxItem, FIPC_QUEUE_SPSC);
        err < 0)
        return fail("fipc_queue_create", err);

    fipc_process *raw_child = nullptr;
    if (int err = fipc_process_start(&raw_child, producer, shared, nullptr); err < 0)
        return fail("fipc_process_start", err);
    std::unique_ptr<fipc_process, FreeProcess> child(raw_child);

    Checksum sum;
    Message m{}, want{};
    std::uint64_t next = 0;
    for (;;) {
        std::size_t len = 0;
        int err = fipc_queue_get(shared->queue, m.data(), m.size(), &len, kTimeout);
        if (err == -EPIPE)
            break; // closed, and every message taken
        if (err < 0)
            return fail("fipc_queue_get", err);
        std::uint64_t n = 0;
        std::memcpy(&n, m.data(), sizeof n);
        if (n != next || len != make_message(n, want)) {
            std::fprintf(stderr, "queue_pair: got %" PRIu64 " (%zu bytes), expected %" PRIu64 "\n",
                         n, len, next);
            return 1;
        }
        sum.add(m.data(), len);
        ++next;
    }

    int code = -1;
    if (int err = fipc_process_join(child.get(), kTimeout); err < 0)
        return fail("fipc_process_join", err);
    if (int err = fipc_process_exitcode(child.get(), &code); err < 0)
        return fail("fipc_process_exitcode", err);
    // The child has exited and been reaped: its checksum is all written.
    if (code != 0 || next != kMessages || sum.value() != shared->checksum) {
        std::fprintf(stderr,
                     "queue_pair: child exit %d, %" PRIu64 " of %" PRIu64 " messages, "
                     "checksum %#" PRIx64 " (the child's %#" PRIx64 ")\n",
                     code, next, kMessages, sum.value(), shared->checksum);
        return 1;
    }
    std::printf("queue_pair: %" PRIu64 " messages in order, checksum %#" PRIx64 ": ok\n", next,
                sum.value());
    return 0;
}
