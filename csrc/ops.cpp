// Fused ATen operators that tch 0.24 does not expose with the arguments we need.
//
// Each function takes and returns tch's tensor handles (heap `at::Tensor*`, owned by the caller
// and freed by tch's `at_free`), records autograd like any ATen call, and reports a C++
// exception as a message (caller frees it with `ebm_free_error`) instead of unwinding into Rust.
#include "shim.h"

#include <ATen/Context.h>
#include <ATen/Version.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/leaky_relu.h>
#if __has_include(<torch/headeronly/version.h>)
#include <torch/headeronly/version.h>
#endif

#include <cstdlib>
#include <cstring>
#include <exception>
#include <string>


extern "C" {

// LeakyReLU with negative slope `slope`: x > 0 ? x : slope * x, one kernel forward and one
// backward (tch's `leaky_relu` fixes the slope at 0.01).
at::Tensor *ebm_leaky_relu(const at::Tensor *x, double slope, char **error) {
  try {
    return new at::Tensor(at::leaky_relu(*x, slope));
  } catch (const std::exception &e) {
    *error = ebm_copy_message(e.what());
    return nullptr;
  }
}

void ebm_free_error(char *error) { std::free(error); }

// The version of the libtorch loaded at run time, as the library records it: the TORCH_VERSION
// entry of its build settings (at::show_config(), what torch.__config__.show() prints); if that
// entry is missing, the TORCH_VERSION of the headers this shim was compiled against. The caller
// frees the string with ebm_free_error.
char *ebm_libtorch_version(void) {
  try {
    const std::string config = at::show_config();
    const std::string key = "TORCH_VERSION=";
    const size_t at = config.find(key);
    if (at != std::string::npos) {
      const size_t start = at + key.size();
      const size_t end = config.find_first_of(", \n", start);
      return ebm_copy_message(config.substr(start, end - start).c_str());
    }
  } catch (const std::exception &) {
  }
#ifdef TORCH_VERSION
  return ebm_copy_message(TORCH_VERSION);
#else
  return ebm_copy_message("unknown");
#endif
}

// libtorch's deterministic-algorithms switch (torch.use_deterministic_algorithms) together with
// cuDNN's deterministic flag (torch.backends.cudnn.deterministic): ops without a deterministic
// implementation then raise an error instead of varying between runs.
void ebm_set_deterministic(int on) {
  at::globalContext().setDeterministicAlgorithms(on != 0, /*warn_only=*/false);
  at::globalContext().setDeterministicCuDNN(on != 0);
}

int ebm_deterministic(void) {
  return at::globalContext().deterministicAlgorithms() && at::globalContext().deterministicCuDNN() ? 1 : 0;
}

}  // extern "C"
