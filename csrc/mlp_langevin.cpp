// Langevin dynamics on the energy of an MLP, in one call: the input gradient written by hand
// (no autograd graph), every buffer allocated once per call, the points in tiles small enough
// that a tile's activations stay in cache through its forward and backward pass, the tiles
// shared out between libtorch's threads.
//
// The network (src/models/mlp.rs with an energy head): a_0 = x, for l = 1..L
//   z_l = a_{l-1} W_l^T + b_l,  a_l = act(z_l);  E(x) = -(a_L . w + c).
// Backpropagation of E to the input:
//   dE/da_L = -w,  delta_l = dE/da_l * act'(z_l),  dE/da_{l-1} = delta_l W_l,  dE/dx = dE/da_0.
// act is swish (SiLU), a = z s with s = sigmoid(z), whose derivative
//   act'(z) = s + z s (1 - s) = s (1 + z (1 - s))
// reuses the forward's sigmoid (no second transcendental; the formula of ATen's silu_backward),
// or LeakyReLU(0.2), act'(z) = 1 for z > 0 else 0.2 (ATen's leaky_relu_backward).
//
// The update of the chains is src/sampling/langevin.rs's, operation for operation, in float32:
//   jem:      x <- x - g * step;       x <- x + N(0, noise^2)
//   textbook: x <- x - g * (step / 2); x <- x + N(0, step)
//   igebm:    x <- x + N(0, noise^2);  x <- x - clamp(g, -c, c) * step
// then the optional clamp. With a narrow input (D <= 4 columns: the 2-D densities) the first
// layer's product and the input gradient's last one are written out here, not left to sgemm,
// whose packing costs more than the 2 D H multiply-adds per point; the gradient's sums over H run
// in 16 interleaved partial sums added pairwise (a fixed order, whatever the vector width). On a
// CPU with AVX-512F, with hidden widths that are multiples of 32, the whole tile runs on
// csrc/mlp_avx512.cpp's kernels (products with the activation applied in registers). The
// noise of each step is drawn by one normal_ call on a tensor of the
// chains' shape from libtorch's default generator, as the autograd path draws it, so the random
// stream is the same. Compiled with -ffp-contract=off: no multiply-add is fused behind our back.
#include "mlp_avx512.h"
#include "shim.h"

#include <ATen/Parallel.h>
#include <ATen/core/grad_mode.h>
#include <ATen/ops/addmm.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <ATen/ops/mm.h>
#include <ATen/ops/sigmoid.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <vector>

namespace {

enum Act { kSwish = 0, kLeakyRelu = 1 };
enum Variant { kJem = 0, kIgebm = 1, kTextbook = 2 };

// The weights of one MLP energy, float32, contiguous, detached.
struct Mlp {
  std::vector<at::Tensor> w;   // W_l [H_l, H_{l-1}]
  std::vector<at::Tensor> wt;  // W_l^T (a view)
  std::vector<at::Tensor> b;   // b_l [H_l]
  at::Tensor head;             // w [H_L]
  float head_bias = 0.0f;
  int act = kSwish;
  // With a narrow input: W_1's columns, cols[k * H_1 + j] = W_1[j, k] (else empty).
  std::vector<float> cols;
  bool narrow_input() const { return !cols.empty(); }
  // The AVX-512 path (csrc/mlp_avx512.cpp): a narrow input, hidden widths all equal and a
  // multiple of 32, a CPU with AVX-512F. fwd[l] packs W_l^T, bwd[l] packs W_l (l >= 1).
  bool fast = false;
  std::vector<ebm_avx512::Packed> fwd, bwd;
};

// Input columns up to which the first layer and the input gradient are computed here.
constexpr int64_t kNarrowInput = 4;

// Whether an MLP of input width d and hidden width h (every layer) takes the AVX-512 path.
bool avx512_path(int64_t d, int64_t h) { return d <= kNarrowInput && h % 32 == 0 && ebm_avx512::available(); }

Mlp make_mlp(const at::Tensor *const *w, const at::Tensor *const *b, int64_t layers, const at::Tensor *head_w,
             const at::Tensor *head_b, int act) {
  TORCH_CHECK(layers >= 1, "an MLP energy needs at least one hidden layer");
  TORCH_CHECK(act == kSwish || act == kLeakyRelu, "unknown activation ", act);
  Mlp m;
  m.act = act;
  for (int64_t l = 0; l < layers; ++l) {
    at::Tensor wl = w[l]->detach().contiguous();
    TORCH_CHECK(wl.dim() == 2 && wl.scalar_type() == at::kFloat && wl.device().is_cpu(),
                "layer ", l, ": a float32 CPU matrix is needed");
    TORCH_CHECK(l == 0 || wl.size(1) == m.w.back().size(0), "layer ", l, ": input size mismatch");
    m.wt.push_back(wl.t());
    m.w.push_back(wl);
    m.b.push_back(b[l]->detach().contiguous());
  }
  m.head = head_w->detach().contiguous().view({-1});
  TORCH_CHECK(m.head.numel() == m.w.back().size(0), "the head's input size differs from the last layer's");
  m.head_bias = head_b->detach().item<float>();
  const int64_t h = m.w[0].size(0), d = m.w[0].size(1);
  if (d <= kNarrowInput) {
    const float *w0 = m.w[0].data_ptr<float>();
    m.cols.resize(static_cast<size_t>(h * d));
    for (int64_t j = 0; j < h; ++j)
      for (int64_t k = 0; k < d; ++k) m.cols[k * h + j] = w0[j * d + k];
  }
  m.fast = avx512_path(d, h);
  for (const auto &wl : m.w) m.fast = m.fast && wl.size(0) == h;
  if (m.fast) {
    m.fwd.resize(static_cast<size_t>(layers));
    m.bwd.resize(static_cast<size_t>(layers));
    for (int64_t l = 1; l < layers; ++l) {
      const float *wp = m.w[l].data_ptr<float>();
      m.fwd[l] = ebm_avx512::pack(wp, h, h, 1, h);
      m.bwd[l] = ebm_avx512::pack(wp, h, h, h, 1);
    }
  }
  return m;
}

// The views of a Scratch's buffers that a tile of p points uses, made once per tile size (a
// tensor view costs a dispatch; a run takes thousands of tiles of the same size).
struct Views {
  int64_t p = -1;
  std::vector<at::Tensor> z, d, up;  // z_l [p, H_l]; act'(z_l) [p, H_l]; dE/da_{l-1} [p, H_{l-1}] (l >= 1)
  at::Tensor delta;                  // delta_L [p, H_L]
};

// Buffers for tiles of up to `rows` points: act'(z_l) of every layer, two activation buffers and
// two gradient buffers of the widest layer.
struct Scratch {
  std::vector<at::Tensor> d;
  at::Tensor a[2], g[2];
  Views full, last;
  Scratch(const Mlp &m, int64_t rows) {
    int64_t widest = 0;
    for (const auto &w : m.w) {
      d.push_back(at::empty({rows, w.size(0)}, w.options()));
      widest = std::max(widest, w.size(0));
    }
    for (int i = 0; i < 2; ++i) {
      a[i] = at::empty({rows, widest}, m.w[0].options());
      g[i] = at::empty({rows, widest}, m.w[0].options());
    }
    full = make(m, rows);
  }
  Views make(const Mlp &m, int64_t p) const {
    const int64_t layers = static_cast<int64_t>(m.w.size());
    Views v;
    v.p = p;
    for (int64_t l = 0; l < layers; ++l) {
      v.z.push_back(a[l % 2].narrow(1, 0, m.w[l].size(0)).narrow(0, 0, p));
      v.d.push_back(d[l].narrow(0, 0, p));
      v.up.push_back(l == 0 ? at::Tensor() : g[(layers - l) % 2].narrow(1, 0, m.w[l].size(1)).narrow(0, 0, p));
    }
    v.delta = g[0].narrow(1, 0, m.w.back().size(0)).narrow(0, 0, p);
    return v;
  }
  Views &views(const Mlp &m, int64_t p) {
    if (p == full.p) return full;
    if (p != last.p) last = make(m, p);
    return last;
  }
};

// sum_j a[j] b[j], j < n, in 16 interleaved partial sums added pairwise at the end: a fixed order,
// so a vectorising compiler gives the same float at any vector width.
inline float dot16(const float *a, const float *b, int64_t n) {
  float acc[16] = {0.0f};
  int64_t j = 0;
  for (; j + 16 <= n; j += 16)
    for (int l = 0; l < 16; ++l) acc[l] += a[j + l] * b[j + l];
  for (int l = 0; j < n; ++j, ++l) acc[l] += a[j] * b[j];
  for (int w = 8; w >= 1; w /= 2)
    for (int l = 0; l < w; ++l) acc[l] += acc[l + w];
  return acc[0];
}

// z <- act(z) in place, d <- act'(z) (d holds sigmoid(z) on entry for swish).
void activate(int act, float *z, float *d, int64_t n) {
  if (act == kSwish) {
    for (int64_t i = 0; i < n; ++i) {
      const float zi = z[i], s = d[i];
      z[i] = zi * s;
      d[i] = s * (1.0f + zi * (1.0f - s));
    }
  } else {
    for (int64_t i = 0; i < n; ++i) {
      const float zi = z[i];
      const bool pos = zi > 0.0f;
      z[i] = pos ? zi : zi * 0.2f;
      d[i] = pos ? 1.0f : 0.2f;
    }
  }
}

float *ptr(const at::Tensor &t) { return t.data_ptr<float>(); }

// tile_grad on the AVX-512 path (m.fast), no libtorch call per tile: x and g point at the tile's
// rows. The last layer's forward writes delta_L = -w act'(z_L) directly.
void tile_grad_fast(const Mlp &m, Views &v, const float *x, float *g, int64_t p, float *energy) {
  const int64_t layers = static_cast<int64_t>(m.w.size()), dim = m.w[0].size(1), h = m.w[0].size(0);
  const float *w = ptr(m.head);
  for (int64_t l = 0; l < layers; ++l) {
    const bool last = l == layers - 1;
    const at::Tensor &d = last ? v.delta : v.d[l];
    if (l == 0)
      ebm_avx512::first_layer(x, p, dim, m.cols.data(), ptr(m.b[0]), h, m.act, ptr(v.z[0]), v.z[0].stride(0), ptr(d),
                              d.stride(0), last ? w : nullptr);
    else
      ebm_avx512::forward(ptr(v.z[l - 1]), p, v.z[l - 1].stride(0), m.fwd[l], ptr(m.b[l]), m.act, ptr(v.z[l]),
                          v.z[l].stride(0), ptr(d), d.stride(0), last ? w : nullptr);
  }
  if (energy != nullptr) {
    const float *a = ptr(v.z[layers - 1]);
    for (int64_t i = 0; i < p; ++i) energy[i] = -(dot16(a + i * h, w, h) + m.head_bias);
  }
  const at::Tensor *delta = &v.delta;
  for (int64_t l = layers - 1; l >= 1; --l) {
    ebm_avx512::backward(ptr(*delta), p, delta->stride(0), m.bwd[l], ptr(v.d[l - 1]), v.d[l - 1].stride(0),
                         ptr(v.up[l]), v.up[l].stride(0));
    delta = &v.up[l];
  }
  ebm_avx512::input_grad(ptr(*delta), p, delta->stride(0), m.cols.data(), h, dim, g);
}

// dE/dx of rows [r, r + p) of x [N, D] into the same rows of g [N, D]; E(x) into energy [p] when
// it is given.
void tile_grad(const Mlp &m, Scratch &s, const at::Tensor &x, at::Tensor &g, int64_t r, int64_t p, float *energy) {
  const int64_t layers = static_cast<int64_t>(m.w.size()), dim = m.w[0].size(1);
  Views &v = s.views(m, p);
  if (m.fast) {
    tile_grad_fast(m, v, x.data_ptr<float>() + r * dim, g.data_ptr<float>() + r * dim, p, energy);
    return;
  }
  for (int64_t l = 0; l < layers; ++l) {
    const int64_t h = m.w[l].size(0);
    at::Tensor &z = v.z[l];
    if (l == 0 && m.narrow_input()) {
      // z_1 = x W_1^T + b_1, one input column at a time, then the bias (addmm's order).
      const float *xp = x.data_ptr<float>() + r * dim, *c = m.cols.data(), *b = m.b[0].data_ptr<float>();
      float *zp = z.data_ptr<float>();
      for (int64_t i = 0; i < p; ++i) {
        float *zi = zp + i * h;
        const float x0 = xp[i * dim];
        for (int64_t j = 0; j < h; ++j) zi[j] = x0 * c[j];
        for (int64_t k = 1; k < dim; ++k) {
          const float xk = xp[i * dim + k];
          for (int64_t j = 0; j < h; ++j) zi[j] = zi[j] + xk * c[k * h + j];
        }
        for (int64_t j = 0; j < h; ++j) zi[j] = zi[j] + b[j];
      }
    } else {
      at::addmm_out(z, m.b[l], l == 0 ? x.narrow(0, r, p) : v.z[l - 1], m.wt[l]);
    }
    at::sigmoid_out(v.d[l], z);
    activate(m.act, z.data_ptr<float>(), v.d[l].data_ptr<float>(), p * h);
  }
  const int64_t h = m.head.numel();
  const float *w = m.head.data_ptr<float>();
  if (energy != nullptr) {
    const float *a = v.z[layers - 1].data_ptr<float>();
    for (int64_t i = 0; i < p; ++i) energy[i] = -(dot16(a + i * h, w, h) + m.head_bias);
  }
  // delta_L = -w * act'(z_L), then back through the layers.
  at::Tensor *delta = &v.delta;
  {
    float *dl = delta->data_ptr<float>();
    const float *dd = v.d[layers - 1].data_ptr<float>();
    for (int64_t i = 0; i < p; ++i)
      for (int64_t j = 0; j < h; ++j) dl[i * h + j] = -w[j] * dd[i * h + j];
  }
  for (int64_t l = layers - 1; l >= 1; --l) {
    const int64_t hin = m.w[l].size(1);
    at::Tensor &up = v.up[l];
    at::mm_out(up, *delta, m.w[l]);
    float *u = up.data_ptr<float>();
    const float *dd = v.d[l - 1].data_ptr<float>();
    for (int64_t i = 0; i < p * hin; ++i) u[i] *= dd[i];
    delta = &up;
  }
  if (m.narrow_input()) {
    // dE/dx[i, k] = sum_j delta_1[i, j] W_1[j, k].
    const int64_t h1 = m.w[0].size(0);
    const float *dp = delta->data_ptr<float>(), *c = m.cols.data();
    float *gp = g.data_ptr<float>() + r * dim;
    for (int64_t i = 0; i < p; ++i)
      for (int64_t k = 0; k < dim; ++k) gp[i * dim + k] = dot16(dp + i * h1, c + k * h1, h1);
  } else {
    at::Tensor gx = g.narrow(0, r, p);
    at::mm_out(gx, *delta, m.w[0]);
  }
}

// One scratch per libtorch thread, each for tiles of up to `rows` points.
struct Scratches {
  std::vector<Scratch> per_thread;
  Scratches(const Mlp &m, int64_t rows) {
    const int threads = std::max(at::get_num_threads(), 1);
    per_thread.reserve(threads);
    for (int t = 0; t < threads; ++t) per_thread.emplace_back(m, rows);
  }
};

// dE/dx of all rows of x [N, D] into g [N, D], tile by tile. Tiles are independent, so libtorch's
// threads take them in parallel (each with its own scratch; the matrix products inside a parallel
// region run on one thread). A tile's result does not depend on which thread computes it, so the
// chains are the same at any thread count.
// The most threads that have computed tiles at once since ebm_mlp_threads_used last read it.
std::atomic<int> threads_used{0};

void grad_all(const Mlp &m, Scratches &s, const at::Tensor &x, at::Tensor &g, int64_t tile, float *energy) {
  const int64_t n = x.size(0), tiles = (n + tile - 1) / tile;
  auto run = [&](int64_t begin, int64_t end) {
    const int me = at::get_thread_num() + 1;
    for (int seen = threads_used.load(); seen < me && !threads_used.compare_exchange_weak(seen, me);) {
    }
    Scratch &mine = s.per_thread[std::min<size_t>(at::get_thread_num(), s.per_thread.size() - 1)];
    for (int64_t t = begin; t < end; ++t) {
      const int64_t r = t * tile, p = std::min(tile, n - r);
      tile_grad(m, mine, x, g, r, p, energy == nullptr ? nullptr : energy + r);
    }
  };
  if (tiles == 1 || s.per_thread.size() == 1) {
    run(0, tiles);
  } else {
    at::parallel_for(0, tiles, 1, run);
  }
}

struct Update {
  int variant;
  double step, noise, clip;
  bool clamp;
  double lo, hi;
};

void axpy_sub(float *x, const float *g, float scale, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const float gs = g[i] * scale;
    x[i] = x[i] - gs;
  }
}

void add(float *x, const float *y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) x[i] = x[i] + y[i];
}

void langevin(const Mlp &m, at::Tensor &x, int64_t steps, const Update &u, int64_t tile) {
  const int64_t n = x.numel();
  Scratches s(m, std::min(tile, x.size(0)));
  at::Tensor g = at::empty_like(x), noise = at::empty_like(x);
  float *xp = x.data_ptr<float>(), *gp = g.data_ptr<float>(), *np = noise.data_ptr<float>();
  const float lo = static_cast<float>(u.lo), hi = static_cast<float>(u.hi);
  const float clip = static_cast<float>(u.clip);
  for (int64_t k = 0; k < steps; ++k) {
    switch (u.variant) {
      case kJem:
        grad_all(m, s, x, g, tile, nullptr);
        axpy_sub(xp, gp, static_cast<float>(u.step), n);
        noise.normal_(0.0, u.noise);
        add(xp, np, n);
        break;
      case kTextbook:
        grad_all(m, s, x, g, tile, nullptr);
        axpy_sub(xp, gp, static_cast<float>(u.step / 2.0), n);
        noise.normal_(0.0, std::sqrt(u.step));
        add(xp, np, n);
        break;
      default:  // kIgebm
        noise.normal_(0.0, u.noise);
        add(xp, np, n);
        grad_all(m, s, x, g, tile, nullptr);
        for (int64_t i = 0; i < n; ++i) gp[i] = std::min(std::max(gp[i], -clip), clip);
        axpy_sub(xp, gp, static_cast<float>(u.step), n);
        break;
    }
    if (u.clamp)
      for (int64_t i = 0; i < n; ++i) xp[i] = std::min(std::max(xp[i], lo), hi);
  }
}

at::Tensor chains_copy(const at::Tensor *x0, const Mlp &m) {
  TORCH_CHECK(x0->dim() == 2 && x0->size(1) == m.w[0].size(1), "the chains must be [N, ", m.w[0].size(1), "]");
  TORCH_CHECK(x0->scalar_type() == at::kFloat && x0->device().is_cpu(), "the chains must be float32 on the CPU");
  return x0->detach().clone(at::MemoryFormat::Contiguous);
}

}  // namespace

extern "C" {

// 1 when an MLP energy of input width `dim` and hidden width `hidden` runs its products on the
// AVX-512 kernels (csrc/mlp_avx512.cpp), 0 when on libtorch's sgemm.
int ebm_mlp_avx512(int64_t dim, int64_t hidden) { return avx512_path(dim, hidden) ? 1 : 0; }

// The most threads that have computed tiles at once since the last call (then 0 again).
int ebm_mlp_threads_used() { return threads_used.exchange(0); }

// E(x) and dE/dx of the MLP energy at x [N, D], by the hand-written backward pass; returns the
// gradient and sets *energy to a new tensor [N].
at::Tensor *ebm_mlp_energy_grad(const at::Tensor *x0, const at::Tensor *const *w, const at::Tensor *const *b,
                                int64_t layers, const at::Tensor *head_w, const at::Tensor *head_b, int act,
                                int64_t tile, at::Tensor **energy, char **error) {
  try {
    at::NoGradGuard no_grad;
    const Mlp m = make_mlp(w, b, layers, head_w, head_b, act);
    at::Tensor x = chains_copy(x0, m);
    TORCH_CHECK(tile >= 1, "tile must be positive");
    Scratches s(m, std::min(tile, std::max<int64_t>(x.size(0), 1)));
    at::Tensor g = at::empty_like(x), e = at::empty({x.size(0)}, x.options());
    grad_all(m, s, x, g, tile, e.data_ptr<float>());
    *energy = new at::Tensor(e);
    return new at::Tensor(g);
  } catch (const std::exception &e) {
    *error = ebm_copy_message(e.what());
    return nullptr;
  }
}

// `steps` Langevin updates of the chains x0 [N, D] (a new tensor; x0 is left as it is).
at::Tensor *ebm_mlp_langevin(const at::Tensor *x0, const at::Tensor *const *w, const at::Tensor *const *b,
                             int64_t layers, const at::Tensor *head_w, const at::Tensor *head_b, int act,
                             int variant, double step, double noise, double clip, int clamp, double lo, double hi,
                             int64_t steps, int64_t tile, char **error) {
  try {
    at::NoGradGuard no_grad;
    TORCH_CHECK(variant == kJem || variant == kIgebm || variant == kTextbook, "unknown variant ", variant);
    TORCH_CHECK(tile >= 1 && steps >= 0, "tile must be positive and steps non-negative");
    const Mlp m = make_mlp(w, b, layers, head_w, head_b, act);
    at::Tensor x = chains_copy(x0, m);
    if (x.size(0) > 0) langevin(m, x, steps, Update{variant, step, noise, clip, clamp != 0, lo, hi}, tile);
    return new at::Tensor(x);
  } catch (const std::exception &e) {
    *error = ebm_copy_message(e.what());
    return nullptr;
  }
}

}  // extern "C"
