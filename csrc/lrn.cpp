// Caffe's cross-channel LRN on the CPU, forward and backward, each one pass
// over the blob:
//   scale = k + alpha/n * (sum of x^2 over the n channels centred on c),
//   y = x * scale^-beta,
//   dx = dy * scale^-beta - (2*alpha*beta/n) * x * (sum over the window of dy * y / scale),
// Caffe's own backward, which is the exact gradient. Written out as tensor ops
// the forward is a dozen passes (squares, padding, one add per window channel,
// the affine, the power, the product), each making a blob autograd may keep,
// and the backward twice that; on GoogLeNet's conv2/norm2 they took longer
// than the convolution before them. Where autograd records, the pair is one
// autograd node that keeps x and scale, as Caffe keeps its scale blob.
//
// The window sum adds the squares from the lowest channel up, as the tensor
// ops do, so `scale` is the same number either way. The power: the common
// betas get forms that vectorise (0.75: one over t*sqrt(t) with t =
// sqrt(scale); 0.5; 1), any other beta libtorch's vectorised exp and log.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <c10/core/GradMode.h>
#include <torch/csrc/autograd/custom_function.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "shim_errors.h"

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define CAFFE_TCH_VECTOR_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define CAFFE_TCH_VECTOR_CLONES
#endif

namespace {

enum class Power : int { General, ThreeQuarters, Half, One };

template <typename T>
struct Window {
  // The window's reach on each side, (local_size - 1) / 2, but at most
  // channels - 1: the channels past that are padding, whose zero squares
  // change no sum. `span` is 2 * pad + 1.
  int64_t pad;
  int64_t span;
  T alpha_over_n;  // alpha / local_size, rounded to T as libtorch rounds a scalar
  T k;
  T gradient_coefficient;  // 2 * alpha * beta / local_size
  Power power;
};

Power power_for(double beta) {
  if (beta == 0.75) return Power::ThreeQuarters;
  if (beta == 0.5) return Power::Half;
  if (beta == 1.0) return Power::One;
  return Power::General;
}

// factor[i] = scale[i]^-beta for the betas with a closed form.
template <typename T>
CAFFE_TCH_VECTOR_CLONES void powers(const T* scale, T* factor, int64_t count, Power power) {
  switch (power) {
    case Power::ThreeQuarters:
      for (int64_t i = 0; i < count; ++i) {
        T t = std::sqrt(scale[i]);
        factor[i] = T(1) / (t * std::sqrt(t));
      }
      break;
    case Power::Half:
      for (int64_t i = 0; i < count; ++i) factor[i] = T(1) / std::sqrt(scale[i]);
      break;
    case Power::One:
      for (int64_t i = 0; i < count; ++i) factor[i] = T(1) / scale[i];
      break;
    case Power::General:
      break;  // the caller's
  }
}

// scale[c] = k + alpha/n * sum of squares[c + j], j < size; `squares` has the
// window's zero padding at both ends.
template <typename T>
CAFFE_TCH_VECTOR_CLONES void window_scale(const T* squares, T* scale, int64_t count, const Window<T>& w) {
  for (int64_t c = 0; c < count; ++c) scale[c] = squares[c];
  for (int64_t j = 1; j < w.span; ++j) {
    const T* shifted = squares + j;
    for (int64_t c = 0; c < count; ++c) scale[c] += shifted[c];
  }
  for (int64_t c = 0; c < count; ++c) scale[c] = scale[c] * w.alpha_over_n + w.k;
}

template <typename T>
CAFFE_TCH_VECTOR_CLONES void multiply(const T* x, const T* factor, T* y, int64_t count) {
  for (int64_t i = 0; i < count; ++i) y[i] = x[i] * factor[i];
}

// Work units of about this many elements each, so that small blobs stay on
// one thread.
constexpr int64_t kGrainElements = 32768;
// Pixels an NCHW work unit covers: its window's planes stay in cache.
constexpr int64_t kTile = 256;

bool channels_last(const at::Tensor& x) {
  return x.is_contiguous(at::MemoryFormat::ChannelsLast) && !x.is_contiguous();
}

// y, and scale where `scale_out` is given (a blob like x). For the general
// beta, y holds the scale and the caller raises it.
template <typename T>
void forward_pass(const at::Tensor& x, at::Tensor& y, at::Tensor* scale_out, const Window<T>& w) {
  const T* xd = x.const_data_ptr<T>();
  T* yd = y.mutable_data_ptr<T>();
  T* sd = scale_out != nullptr ? scale_out->mutable_data_ptr<T>() : nullptr;
  const int64_t n = x.size(0), channels = x.size(1), pixels = x.size(2) * x.size(3);
  const bool general = w.power == Power::General;
  if (channels_last(x)) {
    const int64_t grain = std::max<int64_t>(1, kGrainElements / channels);
    at::parallel_for(0, n * pixels, grain, [&](int64_t begin, int64_t end) {
      std::vector<T> squares(channels + 2 * w.pad, T(0)), scale(channels), factor(channels);
      for (int64_t q = begin; q < end; ++q) {
        const T* xp = xd + q * channels;
        T* yp = yd + q * channels;
        T* sp = sd != nullptr ? sd + q * channels : (general ? yp : scale.data());
        for (int64_t c = 0; c < channels; ++c) squares[w.pad + c] = xp[c] * xp[c];
        window_scale(squares.data(), sp, channels, w);
        if (!general) {
          powers(sp, factor.data(), channels, w.power);
          multiply(xp, factor.data(), yp, channels);
        } else if (sp != yp) {
          std::copy(sp, sp + channels, yp);
        }
      }
    });
    return;
  }
  const int64_t tiles = (pixels + kTile - 1) / kTile;
  const int64_t grain = std::max<int64_t>(1, kGrainElements / (channels * kTile));
  at::parallel_for(0, n * tiles, grain, [&](int64_t begin, int64_t end) {
    std::vector<T> sum(kTile), factor(kTile);
    for (int64_t u = begin; u < end; ++u) {
      const int64_t image = u / tiles, first = (u % tiles) * kTile;
      const int64_t count = std::min(kTile, pixels - first);
      const int64_t base = image * channels * pixels + first;
      for (int64_t c = 0; c < channels; ++c) {
        const int64_t at_c = base + c * pixels;
        T* sp = sd != nullptr ? sd + at_c : (general ? yd + at_c : sum.data());
        // The window's squares, zero outside the channels, summed lowest first.
        std::fill(sp, sp + count, T(0));
        for (int64_t cc = c - w.pad; cc <= c + w.pad; ++cc) {
          if (cc < 0 || cc >= channels) continue;
          const T* xc = xd + base + cc * pixels;
          for (int64_t i = 0; i < count; ++i) sp[i] += xc[i] * xc[i];
        }
        for (int64_t i = 0; i < count; ++i) sp[i] = sp[i] * w.alpha_over_n + w.k;
        if (!general) {
          powers(sp, factor.data(), count, w.power);
          multiply(xd + at_c, factor.data(), yd + at_c, count);
        } else if (sp != yd + at_c) {
          std::copy(sp, sp + count, yd + at_c);
        }
      }
    }
  });
}

// scale^-beta as exp(-beta * ln scale) for a beta with no closed form.
at::Tensor general_factor(const at::Tensor& scale, double beta) {
  return scale.log().mul_(-beta).exp_();
}

template <typename T>
Window<T> window_for(int64_t size, int64_t channels, double alpha, double beta, double k) {
  const int64_t pad = std::min((size - 1) / 2, std::max<int64_t>(channels - 1, 0));
  return Window<T>{pad,
                   2 * pad + 1,
                   static_cast<T>(alpha / static_cast<double>(size)),
                   static_cast<T>(k),
                   static_cast<T>(2.0 * alpha * beta / static_cast<double>(size)),
                   power_for(beta)};
}

template <typename T>
at::Tensor forward_typed(const at::Tensor& x, int64_t size, double alpha, double beta, double k, at::Tensor* scale) {
  Window<T> w = window_for<T>(size, x.size(1), alpha, beta, k);
  at::Tensor y = at::empty_like(x);  // keeps x's memory order
  if (scale != nullptr) {
    *scale = at::empty_like(x);
  }
  forward_pass<T>(x, y, scale, w);
  if (w.power == Power::General) {
    // y holds the scale.
    at::Tensor factor = general_factor(scale != nullptr ? *scale : y, beta);
    y = factor.mul_(x);
  }
  return y;
}

at::Tensor lrn_forward(const at::Tensor& x, int64_t size, double alpha, double beta, double k, at::Tensor* scale) {
  return x.scalar_type() == at::kDouble ? forward_typed<double>(x, size, alpha, beta, k, scale)
                                        : forward_typed<float>(x, size, alpha, beta, k, scale);
}

// ratio = dy * (x * factor) / scale, per element.
template <typename T>
CAFFE_TCH_VECTOR_CLONES void ratio(const T* dy, const T* x, const T* factor, const T* scale, T* out, int64_t count) {
  for (int64_t i = 0; i < count; ++i) out[i] = dy[i] * (x[i] * factor[i]) / scale[i];
}

// dx = dy * factor - coefficient * x * window_sum.
template <typename T>
CAFFE_TCH_VECTOR_CLONES void input_gradient(const T* dy, const T* x, const T* factor, const T* window_sum, T coefficient,
                                            T* dx, int64_t count) {
  for (int64_t i = 0; i < count; ++i) dx[i] = dy[i] * factor[i] - coefficient * x[i] * window_sum[i];
}

template <typename T>
CAFFE_TCH_VECTOR_CLONES void window_sum(const T* padded, T* out, int64_t count, int64_t size) {
  for (int64_t c = 0; c < count; ++c) out[c] = padded[c];
  for (int64_t j = 1; j < size; ++j) {
    const T* shifted = padded + j;
    for (int64_t c = 0; c < count; ++c) out[c] += shifted[c];
  }
}

template <typename T>
at::Tensor backward_typed(const at::Tensor& x, const at::Tensor& scale, const at::Tensor& dy_any, int64_t size,
                          double alpha, double beta, double k) {
  Window<T> w = window_for<T>(size, x.size(1), alpha, beta, k);
  at::Tensor dy = dy_any.contiguous(x.suggest_memory_format());
  at::Tensor factor_all = w.power == Power::General ? general_factor(scale, beta) : at::Tensor();
  at::Tensor dx = at::empty_like(x);
  const T *xd = x.const_data_ptr<T>(), *sd = scale.const_data_ptr<T>(), *gd = dy.const_data_ptr<T>();
  const T* fd = factor_all.defined() ? factor_all.const_data_ptr<T>() : nullptr;
  T* dd = dx.mutable_data_ptr<T>();
  const int64_t n = x.size(0), channels = x.size(1), pixels = x.size(2) * x.size(3);
  auto factor_of = [&](int64_t offset, int64_t count, T* buffer) -> const T* {
    if (fd != nullptr) return fd + offset;
    powers(sd + offset, buffer, count, w.power);
    return buffer;
  };
  if (channels_last(x)) {
    const int64_t grain = std::max<int64_t>(1, kGrainElements / channels);
    at::parallel_for(0, n * pixels, grain, [&](int64_t begin, int64_t end) {
      std::vector<T> ratios(channels + 2 * w.pad, T(0)), sums(channels), factor(channels);
      for (int64_t q = begin; q < end; ++q) {
        const int64_t o = q * channels;
        const T* f = factor_of(o, channels, factor.data());
        ratio(gd + o, xd + o, f, sd + o, ratios.data() + w.pad, channels);
        window_sum(ratios.data(), sums.data(), channels, w.span);
        input_gradient(gd + o, xd + o, f, sums.data(), w.gradient_coefficient, dd + o, channels);
      }
    });
    return dx;
  }
  const int64_t tiles = (pixels + kTile - 1) / kTile;
  const int64_t grain = std::max<int64_t>(1, kGrainElements / (channels * kTile));
  at::parallel_for(0, n * tiles, grain, [&](int64_t begin, int64_t end) {
    // Every channel's ratios over the tile, then each channel's window over them.
    std::vector<T> ratios(channels * kTile), sums(kTile), factor(kTile);
    for (int64_t u = begin; u < end; ++u) {
      const int64_t image = u / tiles, first = (u % tiles) * kTile;
      const int64_t count = std::min(kTile, pixels - first);
      const int64_t base = image * channels * pixels + first;
      for (int64_t c = 0; c < channels; ++c) {
        const int64_t o = base + c * pixels;
        ratio(gd + o, xd + o, factor_of(o, count, factor.data()), sd + o, ratios.data() + c * kTile, count);
      }
      for (int64_t c = 0; c < channels; ++c) {
        const int64_t o = base + c * pixels;
        std::fill(sums.begin(), sums.begin() + count, T(0));
        for (int64_t cc = std::max<int64_t>(0, c - w.pad); cc <= std::min(channels - 1, c + w.pad); ++cc) {
          const T* r = ratios.data() + cc * kTile;
          for (int64_t i = 0; i < count; ++i) sums[i] += r[i];
        }
        input_gradient(gd + o, xd + o, factor_of(o, count, factor.data()), sums.data(), w.gradient_coefficient,
                       dd + o, count);
      }
    }
  });
  return dx;
}

at::Tensor lrn_backward(const at::Tensor& x, const at::Tensor& scale, const at::Tensor& dy, int64_t size, double alpha,
                        double beta, double k) {
  return x.scalar_type() == at::kDouble ? backward_typed<double>(x, scale, dy, size, alpha, beta, k)
                                        : backward_typed<float>(x, scale, dy, size, alpha, beta, k);
}

struct LrnAcrossChannels : public torch::autograd::Function<LrnAcrossChannels> {
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& x, int64_t size, double alpha,
                            double beta, double k) {
    at::Tensor scale;
    at::Tensor y = lrn_forward(x, size, alpha, beta, k, &scale);
    ctx->save_for_backward({x, scale});
    ctx->saved_data["size"] = size;
    ctx->saved_data["alpha"] = alpha;
    ctx->saved_data["beta"] = beta;
    ctx->saved_data["k"] = k;
    return y;
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    torch::autograd::variable_list saved = ctx->get_saved_variables();
    at::Tensor dx;
    if (grads[0].defined()) {
      dx = lrn_backward(saved[0], saved[1], grads[0], ctx->saved_data["size"].toInt(),
                        ctx->saved_data["alpha"].toDouble(), ctx->saved_data["beta"].toDouble(),
                        ctx->saved_data["k"].toDouble());
    }
    return {dx, at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

}  // namespace

extern "C" {

// Cross-channel LRN of x (tch's C_tensor, an at::Tensor*). When x is a 4-D
// CPU float or double tensor, contiguous in NCHW or channels-last order, *out
// is a new at::Tensor* (caller-owned) holding y: computed in one pass, or,
// where autograd records, through one autograd node with the backward above.
// Otherwise *out stays null and the caller's tensor-op path runs. Returns
// null, or a malloc'd message if libtorch threw.
char* caffe_tch_lrn_across_channels(void* x, int64_t size, double alpha, double beta, double k, void** out) {
  return caffe_shim::guarded([&] {
    *out = nullptr;
    const at::Tensor& xt = *static_cast<at::Tensor*>(x);
    bool applicable = xt.dim() == 4 && xt.device().is_cpu() &&
                      (xt.scalar_type() == at::kFloat || xt.scalar_type() == at::kDouble) && size >= 1 &&
                      size % 2 == 1 && xt.numel() > 0 &&
                      (xt.is_contiguous() || xt.is_contiguous(at::MemoryFormat::ChannelsLast));
    if (!applicable) {
      return;
    }
    if (c10::GradMode::is_enabled() && xt.requires_grad()) {
      *out = new at::Tensor(LrnAcrossChannels::apply(xt, size, alpha, beta, k));
    } else {
      *out = new at::Tensor(lrn_forward(xt, size, alpha, beta, k, nullptr));
    }
  });
}

}  // extern "C"
