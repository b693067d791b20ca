// A C API over PyTorch's c10d (TCPStore rendezvous, ProcessGroupGloo) for
// src/dist/group.rs. Compiled by build.rs against the torch wheel's headers;
// the code it calls is in libtorch_cpu, which the crate already links.
//
// Every entry point catches every exception and returns it as a malloc'd
// string (NULL on success): a C++ exception must never unwind into Rust.
// Tensors arrive as tch's C_tensor pointers, which are at::Tensor pointers.
// Gloo's own types are only passed through (its headers come from Debian's
// libgloo-dev, a different snapshot than the one inside libtorch).
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include <ATen/ATen.h>
#include <c10/util/Exception.h>
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>

#include "shim_errors.h"

namespace {

using caffe_shim::guarded;

struct Group {
  // Declared first so it is destroyed last: the process group talks through it.
  c10::intrusive_ptr<c10d::Store> store;
  c10::intrusive_ptr<c10d::ProcessGroupGloo> pg;
  std::chrono::milliseconds timeout;
};


}  // namespace

extern "C" {

// Joins the group: rank 0 hosts the TCPStore at host:port, the others
// connect; then the Gloo process group connects every pair of ranks.
// `iface` (GLOO_SOCKET_IFNAME) or else `bind_host` chooses the address Gloo
// listens on; both empty means the machine's hostname, as PyTorch does.
char* caffe_dist_gloo_new(const char* host, int port, int rank, int world, long long timeout_ms, const char* iface,
                          const char* bind_host, void** out) {
  *out = nullptr;
  return guarded([&] {
    const std::chrono::milliseconds timeout(timeout_ms);
    c10d::TCPStoreOptions so;
    so.port = static_cast<std::uint16_t>(port);
    so.isServer = rank == 0;
    so.numWorkers = static_cast<std::size_t>(world);
    so.waitWorkers = true;
    so.timeout = timeout;
    c10::intrusive_ptr<c10d::Store> store = c10::make_intrusive<c10d::TCPStore>(std::string(host), so);
    auto opts = c10d::ProcessGroupGloo::Options::create(timeout);
    if (iface != nullptr && iface[0] != '\0') {
      opts->devices.push_back(c10d::ProcessGroupGloo::createDeviceForInterface(iface));
    } else if (bind_host != nullptr && bind_host[0] != '\0') {
      opts->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname(bind_host));
    } else {
      opts->devices.push_back(c10d::ProcessGroupGloo::createDefaultDevice());
    }
    // Gloo's keys live under their own prefix, so ours ("caffe/...") cannot clash.
    auto gloo_store = c10::make_intrusive<c10d::PrefixStore>("gloo", store);
    auto pg = c10::make_intrusive<c10d::ProcessGroupGloo>(gloo_store, rank, world, opts);
    *out = new Group{store, pg, timeout};
  });
}

void caffe_dist_free(void* group) {
  // A destructor that throws (a peer gone while Gloo shuts down) must not unwind.
  try {
    delete static_cast<Group*>(group);
  } catch (...) {
  }
}

void caffe_dist_string_free(char* s) {
  std::free(s);
}

// Sums a CPU tensor over all ranks, in place.
char* caffe_dist_allreduce_sum(void* group, void* tensor) {
  return guarded([&] {
    auto* g = static_cast<Group*>(group);
    std::vector<at::Tensor> v{*static_cast<at::Tensor*>(tensor)};
    c10d::AllreduceOptions o;
    o.reduceOp = c10d::ReduceOp::SUM;
    o.timeout = g->timeout;
    g->pg->allreduce(v, o)->wait(g->timeout);
  });
}

// Replaces a CPU tensor with rank `root`'s, in place.
char* caffe_dist_broadcast(void* group, void* tensor, int root) {
  return guarded([&] {
    auto* g = static_cast<Group*>(group);
    std::vector<at::Tensor> v{*static_cast<at::Tensor*>(tensor)};
    c10d::BroadcastOptions o;
    o.rootRank = root;
    o.timeout = g->timeout;
    g->pg->broadcast(v, o)->wait(g->timeout);
  });
}

char* caffe_dist_barrier(void* group) {
  return guarded([&] {
    auto* g = static_cast<Group*>(group);
    c10d::BarrierOptions o;
    o.timeout = g->timeout;
    g->pg->barrier(o)->wait(g->timeout);
  });
}

char* caffe_dist_store_set(void* group, const char* key, const unsigned char* value, size_t len) {
  return guarded([&] {
    auto* g = static_cast<Group*>(group);
    g->store->set(std::string(key), std::vector<std::uint8_t>(value, value + len));
  });
}

// Waits (up to the timeout) for `key`, and returns its value in a malloc'd buffer.
char* caffe_dist_store_get(void* group, const char* key, unsigned char** value, size_t* len) {
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
