// A C API over PyTorch's c10d ProcessGroupNCCL, for CUDA tensors: the NCCL
// half of src/dist/group.rs. build.rs builds it as its own shared library
// (libcaffe_tch_nccl.so, linked against libtorch_cuda), which caffe-tch opens
// with dlopen only when a data-parallel run is on CUDA devices, so that the
// `caffe` binary itself never maps the CUDA libraries.
//
// The entry points mirror csrc/dist_shim.cpp (Gloo): every C++ exception is
// caught and returned as a malloc'd string (NULL on success), and tensors
// arrive as tch's C_tensor pointers, which are at::Tensor pointers.
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include <ATen/ATen.h>
#include <c10/cuda/CUDAFunctions.h>
#include <c10/util/Exception.h>
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>

#include "shim_errors.h"

namespace {

using caffe_shim::guarded;

struct Group {
  // Declared first so it is destroyed last: the process group talks through it.
  c10::intrusive_ptr<c10d::Store> store;
  c10::intrusive_ptr<c10d::ProcessGroupNCCL> pg;
  std::chrono::milliseconds timeout;
};


}  // namespace

extern "C" {

// Joins the group: rank 0 hosts the TCPStore at host:port, the others
// connect; then the NCCL process group is made for `device` (this rank's
// CUDA device, made current). NCCL's communicators are created lazily, at
// the first collective.
char* caffe_nccl_new(const char* host, int port, int rank, int world, long long timeout_ms, int device,
                     void** out) {
  *out = nullptr;
  return guarded([&] {
    const std::chrono::milliseconds timeout(timeout_ms);
    // A collective that outlives the timeout must fail in wait() with an
    // error the caller can report, not abort the process from NCCL's
    // watchdog thread. The user's own setting wins.
    setenv("TORCH_NCCL_BLOCKING_WAIT", "1", 0);
    c10d::TCPStoreOptions so;
    so.port = static_cast<std::uint16_t>(port);
    so.isServer = rank == 0;
    so.numWorkers = static_cast<std::size_t>(world);
    so.waitWorkers = true;
    so.timeout = timeout;
    c10::intrusive_ptr<c10d::Store> store = c10::make_intrusive<c10d::TCPStore>(std::string(host), so);
    auto opts = c10d::ProcessGroupNCCL::Options::create();
    opts->timeout = timeout;
    // The constructor itself refuses a machine without GPUs; check first so
    // the device index below is valid.
    if (c10::cuda::device_count() > 0) {
      c10::cuda::set_device(static_cast<c10::DeviceIndex>(device));
    }
    auto nccl_store = c10::make_intrusive<c10d::PrefixStore>("nccl", store);
    auto pg = c10::make_intrusive<c10d::ProcessGroupNCCL>(nccl_store, rank, world, opts);
    *out = new Group{store, pg, timeout};
  });
}

void caffe_nccl_free(void* group) {
  // A destructor that throws (a peer gone while NCCL shuts down) must not unwind.
  try {
    delete static_cast<Group*>(group);
  } catch (...) {
  }
}

void caffe_nccl_string_free(char* s) {
  std::free(s);
}

// Sums a CUDA tensor over all ranks, in place.
char* caffe_nccl_allreduce_sum(void* group, void* tensor) {
  return guarded([&] {
    auto* g = static_cast<Group*>(group);
    std::vector<at::Tensor> v{*static_cast<at::Tensor*>(tensor)};
    c10d::AllreduceOptions o;
    o.reduceOp = c10d::ReduceOp::SUM;
    o.timeout = g->timeout;
    g->pg->allreduce(v, o)->wait(g->timeout);
  });
}

// Replaces a CUDA tensor with rank `root`'s, in place.
char* caffe_nccl_broadcast(void* group, void* tensor, int root) {
  return guarded([&] {
    auto* g = static_cast<Group*>(group);
    std::vector<at::Tensor> v{*static_cast<at::Tensor*>(tensor)};
    c10d::BroadcastOptions o;
    o.rootRank = root;
    o.timeout = g->timeout;
    g->pg->broadcast(v, o)->wait(g->timeout);
  });
}

char* caffe_nccl_barrier(void* group) {
  return guarded([&] {
    auto* g = static_cast<Group*>(group);
    c10d::BarrierOptions o;
    o.timeout = g->timeout;
    g->pg->barrier(o)->wait(g->timeout);
  });
}

char* caffe_nccl_store_set(void* group, const char* key, const unsigned char* value, size_t len) {
  return guarded([&] {
    auto* g = static_cast<Group*>(group);
    g->store->set(std::string(key), std::vector<std::uint8_t>(value, value + len));
  });
}

// Waits (up to the timeout) for `key`, and returns its value in a malloc'd buffer.
char* caffe_nccl_store_get(void* group, const char* key, unsigned char** value, size_t* len) {
  *value = nullptr;
  *len = 0;
  return guarded([&] {
    auto* g = static_cast<Group*>(group);
    std::vector<std::uint8_t> v = g->store->get(std::string(key));
    auto* buf = static_cast<unsigned char*>(std::malloc(v.empty() ? 1 : v.size()));
    if (buf == nullptr) {
      throw std::bad_alloc();
    }
    if (!v.empty()) {
      std::memcpy(buf, v.data(), v.size());
    }
    *value = buf;
    *len = v.size();
  });
}

}  // extern "C"
