/*
 * value_impl.h - the layout of fipc_value, fipc_value_d and fipc_array in
 * shared memory (internal; value.c, and the constructors in new.c).
 */
#ifndef FIPC_LIB_VALUE_IMPL_H
#define FIPC_LIB_VALUE_IMPL_H

#include <assert.h>

#include <fipc/value.h>

#include "compiler.h"

struct fipc_value {
    _Alignas(FIPC_CACHELINE) int64_t word;
    _Alignas(FIPC_CACHELINE) fipc_lock lock;
};
static_assert(sizeof(struct fipc_value) == 2 * FIPC_CACHELINE, "value layout");

struct fipc_value_d {
    _Alignas(FIPC_CACHELINE) uint64_t bits; /* the bits of a double */
    _Alignas(FIPC_CACHELINE) fipc_lock lock;
};
static_assert(sizeof(struct fipc_value_d) == 2 * FIPC_CACHELINE, "value layout");

#define ARRAY_MAGIC  UINT64_C(0x79617272615f7066) /* "fp_array" */
#define ARRAY_HEADER (2 * FIPC_CACHELINE)         /* the elements follow */

struct fipc_array {
    _Alignas(FIPC_CACHELINE) uint64_t magic;
    uint64_t elem_size;
    uint64_t n;
    _Alignas(FIPC_CACHELINE) fipc_lock lock;
};
static_assert(sizeof(struct fipc_array) == ARRAY_HEADER, "array layout");

#endif
