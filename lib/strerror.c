/*
 * strerror.c - messages for fipc's return codes.
 */
#include <string.h>

#include <fipc/common.h>

const char *fipc_strerror(int err)
{
    if (err >= 0)
        return "success";
    switch (-err) {
    case EAGAIN:
        return "not available now (zero timeout)";
    case ETIMEDOUT:
        return "timed out";
    case EOWNERDEAD:
        return "acquired, but the previous owner died holding it";
    case EPIPE:
        return "closed";
    case EINVAL:
        return "invalid argument";
    case EPERM:
        return "not permitted (not the owner)";
    case EOVERFLOW:
        return "count would overflow or go below zero";
    case ECANCELED:
        return "barrier broken";
    case EMSGSIZE:
        return "message too long";
    case EPROTO:
        return "not a fipc arena (bad header)";
    case EDEADLK:
        return "the caller already holds this lock";
    case EXDEV:
        return "made in another pid namespace (thread ids differ there)";
    }
    const char *s = strerrordesc_np(-err);
    return s ? s : "unknown error";
}
