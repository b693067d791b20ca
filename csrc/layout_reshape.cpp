// A reshape out of a channels-last activation whose gradient comes back
// channels-last.
//
// Why: a layer that merges a 4-D blob's C, H and W axes (InnerProduct,
// Flatten, Reshape) must read them in Caffe's NCHW order, so libtorch's
// reshape copies a channels-last blob into NCHW order, and autograd hands its
// gradient back in that order too. The layer below then gets an NCHW
// gradient for a channels-last blob: libtorch's pooling backward, given the
// two orders, takes a slow strided path (LeNet's pool2 backward about five
// times longer than with both channels-last). Here the backward puts the
// gradient into the blob's own order, one copy, as the forward's.
#include <ATen/ATen.h>
#include <c10/core/GradMode.h>
#include <torch/csrc/autograd/custom_function.h>

#include <cstddef>
#include <cstdint>
#include <vector>

#include "shim_errors.h"

namespace {

struct ReshapeFromChannelsLast : public torch::autograd::Function<ReshapeFromChannelsLast> {
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& x, std::vector<int64_t> shape) {
    ctx->saved_data["sizes"] = x.sizes().vec();
    return x.contiguous().view(shape);
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    at::Tensor dx;
    if (grads[0].defined()) {
      dx = grads[0].reshape(ctx->saved_data["sizes"].toIntVector()).contiguous(at::MemoryFormat::ChannelsLast);
    }
    return {dx, at::Tensor()};
  }
};

}  // namespace

extern "C" {

// x (tch's at::Tensor*) reshaped to `shape` (ndim sizes) through the node
// above, when x is a 4-D CPU tensor laid out channels-last (and not also
// NCHW-contiguous) that autograd records; then *out is a new at::Tensor*
// owned by the caller. Otherwise *out stays null and the caller reshapes.
// Returns null, or a malloc'd message if libtorch threw (a bad shape).
char* caffe_tch_reshape_from_channels_last(void* x, const int64_t* shape, size_t ndim, void** out) {
  return caffe_shim::guarded([&] {
    *out = nullptr;
    const at::Tensor& xt = *static_cast<at::Tensor*>(x);
    bool applicable = xt.dim() == 4 && xt.device().is_cpu() && c10::GradMode::is_enabled() && xt.requires_grad() &&
                      xt.is_contiguous(at::MemoryFormat::ChannelsLast) && !xt.is_contiguous();
    if (!applicable) {
      return;
    }
    std::vector<int64_t> sizes(shape, shape + ndim);
    *out = new at::Tensor(ReshapeFromChannelsLast::apply(xt, sizes));
  });
}

}  // extern "C"
