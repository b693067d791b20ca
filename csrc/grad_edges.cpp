// Autograd's gradient edges, which tch does not bind: the (node, input) pair
// through which a tensor's gradient flows, captured when the tensor is made
// and used later as the root or the target of a backward.
//
// Why: `caffe time` times each layer's backward apart (src/net/timing.rs).
// With tensors alone that needs a handle on every layer's bottom as it was
// read, so a layer Caffe runs in place (ReLU on a convolution's top) had to
// run out of place there, keeping one more activation per such layer. An
// edge captured before the in-place op still names the convolution's output,
// so the layer-wise pass runs the layers exactly as the training step does.
// Starting from edges with given gradients also skips the Σ top·gradient
// product (a tensor of the top's size per layer) a tensor root would need.
#include <torch/csrc/autograd/edge.h>
#include <torch/csrc/autograd/engine.h>
#include <torch/csrc/autograd/variable.h>

#include <cstddef>
#include <stdexcept>
#include <string>

#include "shim_errors.h"

extern "C" {

// The edge through which `tensor`'s (tch's at::Tensor*) gradient flows now:
// its grad_fn and output number, or a leaf's gradient accumulator. Returns
// null and sets *out to a new edge owned by the caller, or a malloc'd message
// (the tensor does not require grad).
char* caffe_tch_gradient_edge(void* tensor, void** out) {
  return caffe_shim::guarded([&] {
    const at::Tensor& t = *static_cast<at::Tensor*>(tensor);
    if (!t.requires_grad()) {
      throw std::runtime_error("the tensor does not require grad");
    }
    torch::autograd::Edge edge = torch::autograd::impl::gradient_edge(t);
    if (!edge.is_valid()) {
      throw std::runtime_error("the tensor has no gradient edge");
    }
    *out = new torch::autograd::Edge(std::move(edge));
  });
}

// Whether `tensor` is a differentiable view of another. An in-place op on a
// view rewrites its base's history and makes the view a new grad_fn, so an
// edge taken from the view before the op is no longer on the path.
bool caffe_tch_is_view(void* tensor) { return static_cast<at::Tensor*>(tensor)->is_view(); }

void caffe_tch_edge_free(void* edge) { delete static_cast<torch::autograd::Edge*>(edge); }

// Backward from n_roots edges, each given its gradient (at::Tensor*), to
// n_outputs edges: grads[k] becomes a new at::Tensor* (the gradient that
// reached outputs[k]) or null where none did. Nothing accumulates into a
// leaf's .grad. The graph's buffers are freed unless keep_graph. Returns
// null, or a malloc'd message (grads then untouched).
char* caffe_tch_backward_edges(void* const* roots, void* const* root_grads, std::size_t n_roots,
                               void* const* outputs, std::size_t n_outputs, bool keep_graph, void** grads) {
  return caffe_shim::guarded([&] {
    torch::autograd::edge_list root_edges;
    torch::autograd::variable_list root_values;
    for (std::size_t i = 0; i < n_roots; ++i) {
      root_edges.push_back(*static_cast<torch::autograd::Edge*>(roots[i]));
      root_values.push_back(*static_cast<at::Tensor*>(root_grads[i]));
    }
    torch::autograd::edge_list output_edges;
    for (std::size_t k = 0; k < n_outputs; ++k) {
      output_edges.push_back(*static_cast<torch::autograd::Edge*>(outputs[k]));
    }
    torch::autograd::variable_list result = torch::autograd::Engine::get_default_engine().execute(
        root_edges, root_values, keep_graph, /*create_graph=*/false, /*accumulate_grad=*/false, output_edges);
    if (result.size() != n_outputs) {
      throw std::runtime_error("autograd returned " + std::to_string(result.size()) + " gradients for " +
                               std::to_string(n_outputs) + " edges");
    }
    for (std::size_t k = 0; k < n_outputs; ++k) {
      grads[k] = result[k].defined() ? new at::Tensor(std::move(result[k])) : nullptr;
    }
  });
}

}  // extern "C"
