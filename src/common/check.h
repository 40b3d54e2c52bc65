#pragma once

#include <cstdio>
#include <cstdlib>

// DB_CHECK is for our own invariants only; untrusted input gets an absl::Status.
#define DB_CHECK(cond)                                                              \
  do {                                                                              \
    if (!(cond)) {                                                                  \
      std::fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
      std::abort();                                                                 \
    }                                                                               \
  } while (0)

#ifdef NDEBUG
#define DB_DCHECK(cond) \
  do {                  \
  } while (0)
#else
#define DB_DCHECK(cond) DB_CHECK(cond)
#endif
