// oneDNN kernels that libtorch registers in its `mkldnn` operator namespace
// (for torch.compile's CPU backend) and tch has no binding for: reached
// through libtorch's dispatcher by name, so a libtorch built without them is
// an error string the caller falls back from, not a link failure.
//
// Why: for a fully connected layer with large weights and a few rows (a deploy
// net's fc6 at batch 10), oneDNN's inner product on the plain weights streams
// them close to memory bandwidth, where MKL's GEMM does not, and it reads the
// weights where they are (no packed copy). For an inference convolution, its
// convolution on weights packed once into oneDNN's own blocked order skips
// the reorder libtorch's convolution does on every call, which at batch 1
// costs about as much as a small convolution.
#include <ATen/core/dispatch/Dispatcher.h>
#include <ATen/core/stack.h>
#include <ATen/ATen.h>
#include <c10/core/GradMode.h>

#include <stdexcept>
#include <string>

#include "shim_errors.h"

namespace {

const c10::OperatorHandle* linear_pointwise() {
  static const std::optional<c10::OperatorHandle> op =
      c10::Dispatcher::singleton().findSchema({"mkldnn::_linear_pointwise", ""});
  return op.has_value() ? &*op : nullptr;
}

const c10::OperatorHandle* convolution_pointwise() {
  static const std::optional<c10::OperatorHandle> op =
      c10::Dispatcher::singleton().findSchema({"mkldnn::_convolution_pointwise", ""});
  return op.has_value() ? &*op : nullptr;
}

// The ops have no backward: where autograd would record, the caller's
// differentiable path must run instead.
void refuse_where_autograd_records(const at::Tensor& x, const at::Tensor& w, void* b) {
  if (c10::GradMode::is_enabled() &&
      (x.requires_grad() || w.requires_grad() || (b != nullptr && static_cast<at::Tensor*>(b)->requires_grad()))) {
    throw std::runtime_error("autograd is recording");
  }
}

c10::IValue optional_tensor(void* t) {
  return t != nullptr ? c10::IValue(*static_cast<at::Tensor*>(t)) : c10::IValue();
}

// Calls one of libtorch's oneDNN pointwise ops (found by `lookup`), (X, W, B?, <what push_middle
// adds>, attr, scalars, algorithm) -> Y, with a fused ReLU when `relu` is set, else none. Returns
// null and sets *out to a new at::Tensor, or returns a malloc'd message: the
// op is missing, autograd records (the ops have no backward, so the caller's
// differentiable path must run), or libtorch threw.
template <typename PushMiddle>
char* call_pointwise(const c10::OperatorHandle* (*lookup)(), const char* name, void* x, void* w, void* b,
                     PushMiddle push_middle, bool relu, void** out) {
  return caffe_shim::guarded([&] {
    const c10::OperatorHandle* op = lookup();
    if (op == nullptr) {
      throw std::runtime_error(std::string("this libtorch has no ") + name);
    }
    const at::Tensor& xt = *static_cast<at::Tensor*>(x);
    const at::Tensor& wt = *static_cast<at::Tensor*>(w);
    refuse_where_autograd_records(xt, wt, b);
    torch::jit::Stack stack;
    stack.emplace_back(xt);
    stack.emplace_back(wt);
    stack.emplace_back(optional_tensor(b));
    push_middle(stack);
    stack.emplace_back(std::string(relu ? "relu" : "none"));
    stack.emplace_back(c10::List<std::optional<at::Scalar>>());
    stack.emplace_back(c10::IValue());  // algorithm: none
    op->callBoxed(&stack);
    *out = new at::Tensor(stack.back().toTensor());
  });
}

// The convolution's C++ signature in libtorch's registration. Called through
// it, the dispatcher hands the arguments straight to the kernel; the boxed
// call above builds and unpacks a stack of them, which at batch 1 is a
// noticeable share of a small convolution's call. A libtorch whose signature
// differs refuses it here (checked once), and the boxed call is used.
using ConvolutionPointwise = at::Tensor(const at::Tensor&, const at::Tensor&, const std::optional<at::Tensor>&,
                                        c10::IntArrayRef, c10::IntArrayRef, c10::IntArrayRef, int64_t,
                                        std::string_view, c10::List<std::optional<at::Scalar>>,
                                        std::optional<std::string_view>);

const c10::TypedOperatorHandle<ConvolutionPointwise>* typed_convolution_pointwise() {
  static const std::optional<c10::TypedOperatorHandle<ConvolutionPointwise>> op =
      []() -> std::optional<c10::TypedOperatorHandle<ConvolutionPointwise>> {
    const c10::OperatorHandle* handle = convolution_pointwise();
    if (handle == nullptr) {
      return std::nullopt;
    }
    try {
      return handle->typed<ConvolutionPointwise>();
    } catch (const std::exception&) {
      return std::nullopt;
    }
  }();
  return op.has_value() ? &*op : nullptr;
}

}  // namespace

extern "C" {

// y = x·wᵀ + b (b may be null), for 2-D CPU float tensors. Tensors are tch's
// C_tensor pointers (at::Tensor*). On success *out is a new at::Tensor* (owned
// by the caller) and the return is null; on failure (also where autograd would
// need a backward) the return is a malloc'd message.
char* caffe_tch_onednn_linear(void* x, void* w, void* b, void** out) {
  return call_pointwise(linear_pointwise, "mkldnn::_linear_pointwise", x, w, b, [](torch::jit::Stack&) {}, false, out);
}

// A 2-D convolution of x (4-D CPU float) with weights w, plain or packed by
// at::mkldnn_reorder_conv2d_weight, and bias b (may be null). geometry holds
// pad, stride and dilation, height then width each; relu: max(y, 0) fused
// after it. Ownership and errors as for caffe_tch_onednn_linear.
char* caffe_tch_onednn_conv2d(void* x, void* w, void* b, const int64_t* geometry, int64_t groups, bool relu,
                              void** out) {
  if (const auto* typed = typed_convolution_pointwise()) {
    return caffe_shim::guarded([&] {
      const at::Tensor& xt = *static_cast<at::Tensor*>(x);
      const at::Tensor& wt = *static_cast<at::Tensor*>(w);
      refuse_where_autograd_records(xt, wt, b);
      std::optional<at::Tensor> bias;
      if (b != nullptr) {
        bias = *static_cast<at::Tensor*>(b);
      }
      // Straight to the CPU kernel: autograd, checked above not to record,
      // has no kernel of its own for the op, only a boxed fallback.
      *out = new at::Tensor(typed->redispatch(c10::DispatchKeySet(c10::DispatchKey::CPU), xt, wt, bias,
                                              {geometry[0], geometry[1]}, {geometry[2], geometry[3]},
                                              {geometry[4], geometry[5]}, groups, relu ? "relu" : "none",
                                              c10::List<std::optional<at::Scalar>>(), std::nullopt));
    });
  }
  auto window = [geometry, groups](torch::jit::Stack& stack) {
    stack.emplace_back(std::vector<int64_t>{geometry[0], geometry[1]});
    stack.emplace_back(std::vector<int64_t>{geometry[2], geometry[3]});
    stack.emplace_back(std::vector<int64_t>{geometry[4], geometry[5]});
    stack.emplace_back(groups);
  };
  return call_pointwise(convolution_pointwise, "mkldnn::_convolution_pointwise", x, w, b, window, relu, out);
}

}  // extern "C"
