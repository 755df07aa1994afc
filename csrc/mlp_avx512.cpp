// Matrix products of the fused MLP sampler in AVX-512 (x86-64 CPUs with AVX-512F; the caller
// checks available() and otherwise keeps libtorch's sgemm).
//
// C = A B with A [p, K] and B [K, N] prepacked in panels of 32 columns. Each output block of 8
// rows x 32 columns lives in 16 zmm registers through the whole sum over k (in order k = 0..K-1,
// one fused multiply-add per term: a fixed order, the same at any tile size or thread count),
// and is finished in registers:
//   forward:  z = C + b, a = act(z), act'(z)   (swish: s = 1 / (1 + e^-z), a = z s,
//                                               act' = s (1 + z (1 - s)); LeakyReLU(0.2)),
//             or delta_L = -w act'(z) in place of act'(z) for the last layer
//   backward: C * act'(z_{l-1})                (delta_{l-1} of the backpropagation)
// so the activations are not read back from memory for a separate sigmoid pass. The narrow first
// layer (z_1 = x W_1^T + b_1 over D <= 4 inputs, no product worth packing) and the input gradient
// dE/dx = delta_1 W_1 are 16-wide loops here too; the latter sums in dot16's order (16 lane
// partials, then pairwise), so it rounds exactly as csrc/mlp_langevin.cpp's scalar version.
//
// e^x: x clamped to [-87, 88], n = round(x log2 e), r = x - n ln 2 with ln 2 in two parts (Cody
// and Waite: 0.693359375 exact in float, then -2.12194440e-4), |r| <= ln 2 / 2, e^r by its Taylor
// polynomial of degree 7 (truncation below r^8 / 8! = 5.3e-9 relative), times 2^n by vscalefps.
// So sigmoid differs from ATen's (Sleef) by a few units in the last place.
//
// Why: on the 2-D sampler's shapes (p = 128 rows, K = N = 128) libtorch's sgemm (MKL) ran at
// 75-82 GFLOP/s on one core of the development machine (AMD EPYC, Zen 4) and this kernel at
// 104-108 GFLOP/s, the core's measured fused-multiply-add peak being about 101-108.
#include "mlp_avx512.h"

#if defined(__x86_64__)

#include <immintrin.h>

#define EBM_AVX512 __attribute__((target("avx512f")))

namespace ebm_avx512 {
namespace {

constexpr int64_t kNr = 32;  // columns of a panel: two zmm registers
constexpr int kMr = 8;       // rows of an output block

EBM_AVX512 inline __m512 exp_ps(__m512 x) {
  x = _mm512_min_ps(_mm512_max_ps(x, _mm512_set1_ps(-87.0f)), _mm512_set1_ps(88.0f));
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
  __m512 p = _mm512_set1_ps(1.0f / 5040.0f);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 720.0f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 120.0f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 24.0f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 6.0f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
  return _mm512_scalef_ps(p, n);
}

// a = act(z), d = act'(z); act 0 is swish, 1 LeakyReLU(0.2) (csrc/mlp_langevin.cpp's Act).
EBM_AVX512 inline void act_vec(int act, __m512 z, __m512 &a, __m512 &d) {
  const __m512 one = _mm512_set1_ps(1.0f);
  if (act == 0) {
    const __m512 s = _mm512_div_ps(one, _mm512_add_ps(one, exp_ps(_mm512_sub_ps(_mm512_setzero_ps(), z))));
    a = _mm512_mul_ps(z, s);
    d = _mm512_mul_ps(s, _mm512_add_ps(one, _mm512_mul_ps(z, _mm512_sub_ps(one, s))));
  } else {
    const __m512 slope = _mm512_set1_ps(0.2f);
    const __mmask16 pos = _mm512_cmp_ps_mask(z, _mm512_setzero_ps(), _CMP_GT_OQ);
    a = _mm512_mask_blend_ps(pos, _mm512_mul_ps(z, slope), z);
    d = _mm512_mask_blend_ps(pos, slope, one);
  }
}

struct Forward {
  const float *bias;
  int act;
  float *out, *d;
  int64_t ldo, ldd;
  const float *head;  // null, or w: then d receives delta_L = -w * act'(z)
  EBM_AVX512 void operator()(int64_t i, int64_t j, __m512 c) const {
    __m512 a, g;
    act_vec(act, _mm512_add_ps(c, _mm512_loadu_ps(bias + j)), a, g);
    if (head != nullptr) g = _mm512_mul_ps(_mm512_sub_ps(_mm512_setzero_ps(), _mm512_loadu_ps(head + j)), g);
    _mm512_storeu_ps(out + i * ldo + j, a);
    _mm512_storeu_ps(d + i * ldd + j, g);
  }
};

struct Backward {
  const float *dprev;
  float *out;
  int64_t ldd, ldo;
  EBM_AVX512 void operator()(int64_t i, int64_t j, __m512 c) const {
    _mm512_storeu_ps(out + i * ldo + j, _mm512_mul_ps(c, _mm512_loadu_ps(dprev + i * ldd + j)));
  }
};

// Rows i0 .. i0 + MR of A times one panel (columns col .. col + 32), handed to the epilogue.
template <int MR, class Epilogue>
EBM_AVX512 inline void block(const float *a, int64_t lda, const float *panel, int64_t k, int64_t i0, int64_t col,
                             const Epilogue &epi) {
  __m512 acc[MR][2];
#pragma GCC unroll 16
  for (int i = 0; i < MR; ++i) acc[i][0] = acc[i][1] = _mm512_setzero_ps();
  for (int64_t t = 0; t < k; ++t) {
    const __m512 b0 = _mm512_loadu_ps(panel + t * kNr), b1 = _mm512_loadu_ps(panel + t * kNr + 16);
#pragma GCC unroll 16
    for (int i = 0; i < MR; ++i) {
      const __m512 av = _mm512_set1_ps(a[(i0 + i) * lda + t]);
      acc[i][0] = _mm512_fmadd_ps(av, b0, acc[i][0]);
      acc[i][1] = _mm512_fmadd_ps(av, b1, acc[i][1]);
    }
  }
#pragma GCC unroll 16
  for (int i = 0; i < MR; ++i) {
    epi(i0 + i, col, acc[i][0]);
    epi(i0 + i, col + 16, acc[i][1]);
  }
}

template <class Epilogue>
EBM_AVX512 void gemm(const float *a, int64_t p, int64_t lda, const Packed &b, const Epilogue &epi) {
  for (int64_t q = 0; q < b.n / kNr; ++q) {
    const float *panel = b.panels.data() + q * b.k * kNr;
    const int64_t col = q * kNr;
    int64_t i = 0;
    for (; i + kMr <= p; i += kMr) block<kMr>(a, lda, panel, b.k, i, col, epi);
    switch (p - i) {
      case 7: block<7>(a, lda, panel, b.k, i, col, epi); break;
      case 6: block<6>(a, lda, panel, b.k, i, col, epi); break;
      case 5: block<5>(a, lda, panel, b.k, i, col, epi); break;
      case 4: block<4>(a, lda, panel, b.k, i, col, epi); break;
      case 3: block<3>(a, lda, panel, b.k, i, col, epi); break;
      case 2: block<2>(a, lda, panel, b.k, i, col, epi); break;
      case 1: block<1>(a, lda, panel, b.k, i, col, epi); break;
      default: break;
    }
  }
}

}  // namespace

bool available() { return __builtin_cpu_supports("avx512f"); }

Packed pack(const float *src, int64_t k, int64_t n, int64_t stride_k, int64_t stride_n) {
  Packed b;
  b.k = k;
  b.n = n;
  b.panels.resize(static_cast<size_t>(k * n));
  for (int64_t q = 0; q < n / kNr; ++q)
    for (int64_t t = 0; t < k; ++t)
      for (int64_t j = 0; j < kNr; ++j)
        b.panels[(q * k + t) * kNr + j] = src[t * stride_k + (q * kNr + j) * stride_n];
  return b;
}

EBM_AVX512 void forward(const float *a, int64_t p, int64_t lda, const Packed &b, const float *bias, int act,
                        float *out, int64_t ldo, float *d, int64_t ldd, const float *head) {
  gemm(a, p, lda, b, Forward{bias, act, out, d, ldo, ldd, head});
}

EBM_AVX512 void first_layer(const float *x, int64_t p, int64_t dim, const float *cols, const float *bias, int64_t h,
                            int act, float *out, int64_t ldo, float *d, int64_t ldd, const float *head) {
  for (int64_t i = 0; i < p; ++i) {
    for (int64_t j = 0; j < h; j += 16) {
      __m512 z = _mm512_mul_ps(_mm512_set1_ps(x[i * dim]), _mm512_loadu_ps(cols + j));
      for (int64_t k = 1; k < dim; ++k)
        z = _mm512_add_ps(z, _mm512_mul_ps(_mm512_set1_ps(x[i * dim + k]), _mm512_loadu_ps(cols + k * h + j)));
      Forward{bias, act, out, d, ldo, ldd, head}(i, j, z);
    }
  }
}

EBM_AVX512 void input_grad(const float *delta, int64_t p, int64_t ld, const float *cols, int64_t h, int64_t dim,
                           float *g) {
  float acc[16];
  for (int64_t i = 0; i < p; ++i)
    for (int64_t k = 0; k < dim; ++k) {
      __m512 s = _mm512_setzero_ps();
      for (int64_t j = 0; j < h; j += 16)
        s = _mm512_add_ps(s, _mm512_mul_ps(_mm512_loadu_ps(delta + i * ld + j), _mm512_loadu_ps(cols + k * h + j)));
      _mm512_storeu_ps(acc, s);
      for (int w = 8; w >= 1; w /= 2)
        for (int l = 0; l < w; ++l) acc[l] += acc[l + w];
      g[i * dim + k] = acc[0];
    }
}

EBM_AVX512 void backward(const float *a, int64_t p, int64_t lda, const Packed &b, const float *dprev, int64_t ldd,
                         float *out, int64_t ldo) {
  gemm(a, p, lda, b, Backward{dprev, out, ldd, ldo});
}

}  // namespace ebm_avx512

#else  // not x86-64: never available, never called.

namespace ebm_avx512 {
bool available() { return false; }
Packed pack(const float *, int64_t, int64_t, int64_t, int64_t) { return Packed{}; }
void forward(const float *, int64_t, int64_t, const Packed &, const float *, int, float *, int64_t, float *, int64_t,
             const float *) {}
void first_layer(const float *, int64_t, int64_t, const float *, const float *, int64_t, int, float *, int64_t,
                 float *, int64_t, const float *) {}
void input_grad(const float *, int64_t, int64_t, const float *, int64_t, int64_t, float *) {}
void backward(const float *, int64_t, int64_t, const Packed &, const float *, int64_t, float *, int64_t) {}
}  // namespace ebm_avx512

#endif
