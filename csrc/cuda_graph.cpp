// A C API over libtorch's at::cuda::CUDAGraph, for src/util/cuda_graph.rs:
// a training pass recorded once and replayed as one launch. Built into the
// CUDA shim library with csrc/nccl_shim.cpp (libcaffe_tch_cuda.so, linked
// against libtorch_cuda), which only a CUDA run opens.
//
// A graph is captured on a side stream (CUDA refuses the default one); the
// eager iterations before it run on that stream too, so that lazily made
// per-stream state (cuBLAS workspaces) exists before the capture. Every C++
// exception comes back as a malloc'd string (NULL on success). A capture that
// fails half-way (an operation that waits for the host, which a graph cannot
// hold) is ended and its memory pool released, so eager work can go on.
#include <cstdlib>
#include <cstring>
#include <memory>
#include <optional>
#include <string>

#include <ATen/cuda/CUDAGraph.h>
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAFunctions.h>
#include <c10/cuda/CUDAStream.h>
#include <c10/util/Exception.h>
#include <cuda_runtime_api.h>

#include "shim_errors.h"

namespace {

using caffe_shim::guarded;

struct Graph {
  c10::DeviceIndex device;
  at::cuda::MempoolId_t pool;
  std::optional<at::cuda::CUDAStream> side;
  std::optional<at::cuda::CUDAStream> origin;
  // Made at capture_begin: a CUDAGraph owns at most one capture.
  std::optional<at::cuda::CUDAGraph> graph;
  bool capturing = false;
  bool captured = false;
};


// Makes `waiter` wait for the work queued so far on `on`.
void wait_for(const at::cuda::CUDAStream& waiter, const at::cuda::CUDAStream& on) {
  cudaEvent_t event = nullptr;
  C10_CUDA_CHECK(cudaEventCreateWithFlags(&event, cudaEventDisableTiming));
  cudaError_t recorded = cudaEventRecord(event, on.stream());
  cudaError_t waited = recorded == cudaSuccess ? cudaStreamWaitEvent(waiter.stream(), event, 0) : recorded;
  C10_CUDA_CHECK(cudaEventDestroy(event));
  C10_CUDA_CHECK(waited);
}

}  // namespace

extern "C" {

// A graph for `device`, with its side stream and its own memory pool.
char* caffe_graph_new(int device, void** out) {
  *out = nullptr;
  return guarded([&] {
    auto g = std::make_unique<Graph>();
    g->device = static_cast<c10::DeviceIndex>(device);
    g->pool = at::cuda::graph_pool_handle();
    g->side = at::cuda::getStreamFromPool(false, g->device);
    *out = g.release();
  });
}

// From now on this thread's work on the device goes to the side stream,
// after what the current stream has queued.
char* caffe_graph_enter(void* handle) {
  return guarded([&] {
    auto g = static_cast<Graph*>(handle);
    TORCH_CHECK(!g->origin.has_value(), "the graph's side stream is already entered");
    auto current = at::cuda::getCurrentCUDAStream(g->device);
    wait_for(*g->side, current);
    g->origin = current;
    at::cuda::setCurrentCUDAStream(*g->side);
  });
}

// Back to the stream that was current at enter, after the side stream's work.
char* caffe_graph_leave(void* handle) {
  return guarded([&] {
    auto g = static_cast<Graph*>(handle);
    TORCH_CHECK(g->origin.has_value(), "the graph's side stream was not entered");
    auto origin = *g->origin;
    g->origin.reset();
    at::cuda::setCurrentCUDAStream(origin);
    wait_for(origin, *g->side);
  });
}

// Starts recording (inside enter/leave): work on the side stream is recorded,
// not run, and its memory comes from the graph's pool.
char* caffe_graph_capture_begin(void* handle) {
  return guarded([&] {
    auto g = static_cast<Graph*>(handle);
    TORCH_CHECK(g->origin.has_value(), "capture outside the graph's side stream");
    TORCH_CHECK(!g->graph.has_value(), "this graph was already captured");
    g->graph.emplace();
    g->graph->capture_begin(g->pool, cudaStreamCaptureModeGlobal);
    g->capturing = true;
  });
}

// Ends the recording and makes the graph ready to replay. On failure the
// capture is over all the same (see caffe_graph_abort).
char* caffe_graph_capture_end(void* handle) {
  auto g = static_cast<Graph*>(handle);
  char* err = guarded([&] {
    TORCH_CHECK(g->capturing, "no capture to end");
    g->capturing = false;
    g->graph->capture_end();
    g->captured = true;
  });
  if (err != nullptr) {
    // capture_end threw before handing the pool back to the allocator.
    guarded([&] { c10::cuda::CUDACachingAllocator::endAllocateToPool(g->device, g->pool); });
    guarded([&] { c10::cuda::CUDACachingAllocator::releasePool(g->device, g->pool); });
    // The failed capture leaves its error as the runtime's last one.
    (void)cudaGetLastError();
  }
  return err;
}

// Ends a capture that an operation broke (the caller's own error is the
// message); a no-op when no capture is open.
char* caffe_graph_abort(void* handle) {
  auto g = static_cast<Graph*>(handle);
  if (!g->capturing) {
    return nullptr;
  }
  char* err = caffe_graph_capture_end(handle);
  std::free(err);
  return nullptr;
}

// Runs the recorded work on the current stream.
char* caffe_graph_replay(void* handle) {
  return guarded([&] {
    auto g = static_cast<Graph*>(handle);
    TORCH_CHECK(g->captured, "replay of a graph that was not captured");
    g->graph->replay();
  });
}

void caffe_graph_free(void* handle) {
  auto g = static_cast<Graph*>(handle);
  if (g == nullptr) {
    return;
  }
  if (g->capturing) {
    std::free(caffe_graph_abort(handle));
  }
  if (g->origin.has_value()) {
    std::free(caffe_graph_leave(handle));
  }
  delete g;
}

void caffe_graph_string_free(char* s) {
  std::free(s);
}

}  // extern "C"
