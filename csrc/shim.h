// What the shim's translation units share: tensors cross the C ABI as tch's heap `at::Tensor*`
// handles; a C++ exception becomes a malloc'd message the caller frees with `ebm_free_error`.
#pragma once
#include <ATen/core/Tensor.h>

#include <cstdlib>
#include <cstring>
#include <exception>

inline char *ebm_copy_message(const char *what) {
  const size_t n = std::strlen(what) + 1;
  char *out = static_cast<char *>(std::malloc(n));
  if (out != nullptr) std::memcpy(out, what, n);
  return out;
}
