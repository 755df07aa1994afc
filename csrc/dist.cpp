// Data-parallel communication on PyTorch's own c10d (the library torch.distributed runs on): a
// TCPStore for the rendezvous and a ProcessGroupGloo (libtorch_cpu) or, when EBM_NCCL is defined,
// a ProcessGroupNCCL (libtorch_cuda) for the collectives. Compiled by build.rs against the libtorch
// headers (and Gloo's, which the torch wheel does not ship) only when Gloo's headers are found;
// EBM_NCCL only when NCCL's and the CUDA runtime's headers are found too; see src/dist/ffi.rs.
//
// Every function reports a C++ exception as a message (freed by the caller with ebm_free_error)
// instead of unwinding into Rust; c10 errors give their message without the C++ backtrace.
#define USE_C10D_GLOO 1
#include <c10/util/Exception.h>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#include <torch/csrc/distributed/c10d/reducer.hpp>
#ifdef EBM_NCCL
#define USE_C10D_NCCL 1
#include <c10/cuda/CUDAFunctions.h>
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <memory>
#include <unordered_map>
#include <string>
#include <vector>

namespace {
char *copy_text(const std::string &what) {
  char *out = static_cast<char *>(std::malloc(what.size() + 1));
  if (out != nullptr) std::memcpy(out, what.c_str(), what.size() + 1);
  return out;
}

// Runs `body`, turning an exception into `*error` and the return value -1.
template <typename F>
int guarded(char **error, F body) {
  try {
    body();
    return 0;
  } catch (const c10::Error &e) {
    *error = copy_text(e.what_without_backtrace());
  } catch (const std::exception &e) {
    *error = copy_text(e.what());
  }
  return -1;
}

bool is_loopback(const std::string &host) {
  return host == "localhost" || host.rfind("127.", 0) == 0 || host == "::1";
}
}  // namespace

// Drops c10 warnings: the Reducer's once-per-process note that finding unused parameters costs a
// graph traversal (ebm asks for it deliberately: an objective may leave a parameter unused).
struct Quiet : c10::WarningHandler {
  void process(const c10::Warning &) override {}
};

struct EbmGroup {
  c10::intrusive_ptr<c10d::TCPStore> store;
  // Gloo or NCCL: the collectives below use only c10d::Backend's interface.
  c10::intrusive_ptr<c10d::Backend> pg;
  std::chrono::milliseconds timeout;
};

// DistributedDataParallel's gradient reducer (c10d::Reducer): post-hooks on every parameter's
// gradient accumulator copy each gradient, divided by the world size, into its bucket, and
// all-reduce a bucket as soon as all of its gradients are in, while the backward pass goes on;
// the pass ends by waiting for every bucket and copying the averages back into .grad.
struct EbmReducer {
  c10::intrusive_ptr<c10d::ProcessGroup> pg;
  std::unique_ptr<c10d::Reducer> reducer;
};

extern "C" {

// Connects to the TCPStore at host:port (rank 0 hosts it); no process group yet, so that the
// caller can check through the store who joined, and with what world size, before Gloo's own
// rendezvous (which would only time out).
EbmGroup *ebm_dist_connect(const char *host, int port, int rank, int world, long long timeout_ms, char **error) {
  EbmGroup *out = nullptr;
  guarded(error, [&] {
    const std::chrono::milliseconds timeout(timeout_ms);
    c10d::TCPStoreOptions so;
    so.port = static_cast<std::uint16_t>(port);
    so.isServer = rank == 0;
    so.numWorkers = static_cast<std::size_t>(world);
    so.waitWorkers = false;
    so.timeout = timeout;
    auto store = c10::make_intrusive<c10d::TCPStore>(std::string(host), so);
    out = new EbmGroup{store, nullptr, timeout};
  });
  return out;
}

// Builds the Gloo process group of `world` ranks over the store. Gloo's sockets bind to: the
// interface GLOO_SOCKET_IFNAME names if set (torchrun's variable), the loopback address when
// host is a loopback address, else the address this machine's hostname resolves to (c10d's
// default device).
int ebm_dist_start_group(EbmGroup *g, const char *host, int rank, int world, char **error) {
  return guarded(error, [&] {
    auto opts = c10d::ProcessGroupGloo::Options::create(g->timeout);
    const char *ifname = std::getenv("GLOO_SOCKET_IFNAME");
    if (ifname != nullptr && *ifname != '\0') {
      opts->devices.push_back(c10d::ProcessGroupGloo::createDeviceForInterface(ifname));
    } else if (is_loopback(host)) {
      opts->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1"));
    } else {
      opts->devices.push_back(c10d::ProcessGroupGloo::createDefaultDevice());
    }
    opts->threads = 1;
    auto store = c10::static_intrusive_pointer_cast<c10d::Store>(g->store);
    g->pg = c10::make_intrusive<c10d::ProcessGroupGloo>(store, rank, world, opts);
  });
}

// Whether this shim was compiled with ProcessGroupNCCL (1) or not (0).
int ebm_dist_has_nccl() {
#ifdef EBM_NCCL
  return 1;
#else
  return 0;
#endif
}

// Builds the NCCL process group of `world` ranks over the store, this rank on GPU `device`
// (cuda:LOCAL_RANK): the device is made current and bound to the group, and the communicator is
// created now (eagerly), so that a NCCL failure is reported at joining, not at the first
// all-reduce. Collectives then take tensors on that GPU only.
int ebm_dist_start_nccl(EbmGroup *g, int rank, int world, int device, char **error) {
#ifdef EBM_NCCL
  return guarded(error, [&] {
    const at::Device gpu(at::kCUDA, static_cast<c10::DeviceIndex>(device));
    c10::cuda::set_device(gpu.index());
    auto opts = c10d::ProcessGroupNCCL::Options::create();
    opts->timeout = g->timeout;
    auto store = c10::static_intrusive_pointer_cast<c10d::Store>(g->store);
    auto pg = c10::make_intrusive<c10d::ProcessGroupNCCL>(store, rank, world, opts);
    pg->setBoundDeviceId(gpu);
    pg->eagerConnectSingleDevice(gpu);
    g->pg = pg;
  });
#else
  *error = copy_text("this shim was compiled without NCCL");
  return -1;
#endif
}

void ebm_dist_free(EbmGroup *g) { delete g; }

// store[key] = value (bytes).
int ebm_dist_store_set(EbmGroup *g, const char *key, const char *value, char **error) {
  return guarded(error, [&] {
    const std::string v(value);
    g->store->set(key, std::vector<uint8_t>(v.begin(), v.end()));
  });
}

// store[key], waiting up to timeout_ms for it to exist; the caller frees *value (ebm_free_error).
int ebm_dist_store_get(EbmGroup *g, const char *key, long long timeout_ms, char **value, char **error) {
  return guarded(error, [&] {
    g->store->wait({key}, std::chrono::milliseconds(timeout_ms));
    const auto bytes = g->store->get(key);
    *value = copy_text(std::string(bytes.begin(), bytes.end()));
  });
}

// Whether every key exists now (1) or not (0), without waiting.
int ebm_dist_store_check(EbmGroup *g, const char *key, int *exists, char **error) {
  return guarded(error, [&] { *exists = g->store->check({key}) ? 1 : 0; });
}

// In place: t = op over ranks of t (op 0: sum, 1: max, 2: min).
int ebm_dist_all_reduce(EbmGroup *g, at::Tensor *t, int op, char **error) {
  return guarded(error, [&] {
    std::vector<at::Tensor> v{*t};
    c10d::AllreduceOptions o;
    o.reduceOp = op == 1 ? c10d::ReduceOp::MAX : op == 2 ? c10d::ReduceOp::MIN : c10d::ReduceOp::SUM;
    o.timeout = g->timeout;
    g->pg->allreduce(v, o)->wait(g->timeout);
  });
}

// In place: t = rank root's t.
int ebm_dist_broadcast(EbmGroup *g, at::Tensor *t, int root, char **error) {
  return guarded(error, [&] {
    std::vector<at::Tensor> v{*t};
    c10d::BroadcastOptions o;
    o.rootRank = root;
    o.timeout = g->timeout;
    g->pg->broadcast(v, o)->wait(g->timeout);
  });
}

// out[r] = rank r's input, for out of shape [world, ...input's shape] (contiguous).
int ebm_dist_all_gather(EbmGroup *g, const at::Tensor *input, at::Tensor *out, char **error) {
  return guarded(error, [&] {
    std::vector<at::Tensor> in{*input};
    std::vector<std::vector<at::Tensor>> outs(1);
    for (int64_t r = 0; r < out->size(0); ++r) outs[0].push_back(out->select(0, r));
    c10d::AllgatherOptions o;
    o.timeout = g->timeout;
    g->pg->allgather(outs, in, o)->wait(g->timeout);
  });
}

int ebm_dist_barrier(EbmGroup *g, char **error) {
  return guarded(error, [&] {
    c10d::BarrierOptions o;
    o.timeout = g->timeout;
    g->pg->barrier(o)->wait(g->timeout);
  });
}

// A reducer for the n parameters (the same tensors, in the same order, on every rank), in buckets:
// bucket b holds the indices order[start_b .. start_b + sizes[b]), the first bucket's gradients
// being the first the backward pass produces. It wraps the group's backend in a c10d::ProcessGroup
// (the Reducer's interface), finds unused parameters every pass (an objective may not use them
// all), and keeps gradients apart from the buckets.
EbmReducer *ebm_dist_reducer_new(EbmGroup *g, at::Tensor **params, int n, const long long *order,
                                 const long long *sizes, int buckets, long long bucket_bytes, char **error) {
  EbmReducer *out = nullptr;
  guarded(error, [&] {
    std::vector<at::Tensor> ps;
    for (int i = 0; i < n; ++i) ps.push_back(*params[i]);
    std::vector<std::vector<size_t>> indices(static_cast<size_t>(buckets));
    long long at = 0;
    for (int b = 0; b < buckets; ++b)
      for (long long k = 0; k < sizes[b]; ++k) indices[b].push_back(static_cast<size_t>(order[at++]));
    auto store = c10::static_intrusive_pointer_cast<c10d::Store>(g->store);
    auto pg = c10::make_intrusive<c10d::ProcessGroup>(store, g->pg->getRank(), g->pg->getSize());
    const bool nccl = g->pg->getBackendName() == "nccl";
    const auto type = nccl ? c10d::ProcessGroup::BackendType::NCCL : c10d::ProcessGroup::BackendType::GLOO;
    pg->setBoundDeviceId(g->pg->getBoundDeviceId());
    pg->setDefaultBackend(type);
    if (!nccl) pg->setBackend(c10::DeviceType::CPU, type, g->pg);
    if (ps[0].device().type() != c10::DeviceType::CPU) pg->setBackend(ps[0].device().type(), type, g->pg);
    auto r = std::make_unique<c10d::Reducer>(ps, indices, pg, std::vector<bool>(ps.size(), false), bucket_bytes,
                                             /*find_unused_parameters=*/true, /*gradient_as_bucket_view=*/false,
                                             std::unordered_map<size_t, std::string>{}, bucket_bytes,
                                             /*skip_all_reduce_unused_params=*/false, /*use_python_reducer=*/false,
                                             std::vector<int64_t>{});
    out = new EbmReducer{pg, std::move(r)};
  });
  return out;
}

// Arms the reducer for the backward pass of `loss`, which the caller runs next.
int ebm_dist_reducer_prepare(EbmReducer *r, const at::Tensor *loss, char **error) {
  return guarded(error, [&] {
    Quiet quiet;
    c10::WarningUtils::WarningHandlerGuard guard(&quiet);
    r->reducer->prepare_for_backward({*loss});
  });
}

void ebm_dist_reducer_free(EbmReducer *r) {
  try {
    delete r;
  } catch (...) {
  }
}

}  // extern "C"
