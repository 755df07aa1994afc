// The matrix products of the fused MLP sampler (csrc/mlp_langevin.cpp) in AVX-512, with the
// activation or the derivative product applied while the result is still in registers.
// See csrc/mlp_avx512.cpp for the maths and the measurements behind it.
#pragma once

#include <cstdint>
#include <vector>

namespace ebm_avx512 {

// True when the build is x86-64 and this CPU has AVX-512F.
bool available();

// A matrix B [K, N] (N a multiple of 32) in panels of 32 columns: panel q holds B[:, 32q .. 32q + 32]
// as [K][32], so that the product streams one panel from L1 for many rows of A.
struct Packed {
  std::vector<float> panels;
  int64_t k = 0, n = 0;
};

// B[i, j] = src[i * stride_k + j * stride_n].
Packed pack(const float *src, int64_t k, int64_t n, int64_t stride_k, int64_t stride_n);

// z = a B + bias, then out = act(z), d = act'(z); a [p, K] with row stride lda, out with ldo, d with
// ldd. With head = w [N] (the last layer), d receives delta_L = -w * act'(z) instead.
void forward(const float *a, int64_t p, int64_t lda, const Packed &b, const float *bias, int act, float *out,
             int64_t ldo, float *d, int64_t ldd, const float *head);

// The same for the first layer of a narrow input x [p, dim] (row stride dim): z = x W^T + b with
// cols[k * h + j] = W[j, k], h a multiple of 16.
void first_layer(const float *x, int64_t p, int64_t dim, const float *cols, const float *bias, int64_t h, int act,
                 float *out, int64_t ldo, float *d, int64_t ldd, const float *head);

// g[i, k] = sum_j delta[i, j] W[j, k] (cols as above), in dot16's order; g [p, dim] contiguous.
void input_grad(const float *delta, int64_t p, int64_t ld, const float *cols, int64_t h, int64_t dim, float *g);

// out = (a B) * dprev elementwise; dprev with row stride ldd, out with ldo.
void backward(const float *a, int64_t p, int64_t lda, const Packed &b, const float *dprev, int64_t ldd, float *out,
              int64_t ldo);


}  // namespace ebm_avx512
