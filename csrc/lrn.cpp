// Caffe's LRN on the CPU, forward and backward, each one pass over the blob:
//   scale = k + alpha/n * (sum of x^2 over the n channels centred on c)       ACROSS_CHANNELS
//   scale = 1 + alpha * (sum of x^2 over the n x n pixels centred on p) / n^2  WITHIN_CHANNEL
//   y = x * scale^-beta,
//   dx = dy * scale^-beta - (2*alpha*beta/m) * x * (sum over the window of dy * y / scale),
// with m = n across channels and n^2 within: the exact gradient, which is
// Caffe's backward for both regions. Written out as tensor ops the forward is
// a dozen passes (squares, padding or pooling, the window's adds, the affine,
// the power, the product), each making a blob autograd may keep, and the
// backward twice that; on GoogLeNet's conv2/norm2 they took longer than the
// convolution before them. Where autograd records, the pair is one autograd
// node that keeps x and scale, as Caffe keeps its scale blob.
//
// Window sums add in the order Caffe's and libtorch's loops do (lowest
// channel first; rows, then pixels within a row), so `scale` is the same
// number as with the tensor ops. The power: the common betas get forms that
// vectorise (0.75: one over t*sqrt(t) with t = sqrt(scale); 0.5; 1), any
// other beta libtorch's vectorised exp and log.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <c10/core/GradMode.h>
#include <torch/csrc/autograd/custom_function.h>

#include <algorithm>
#include <cmath>
#include <utility>
#include <vector>

#include "shim_errors.h"

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define CAFFE_TCH_VECTOR_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define CAFFE_TCH_VECTOR_CLONES
#endif

namespace {

enum class Power : int { General, ThreeQuarters, Half, One };

enum class Region : int { AcrossChannels = 0, WithinChannel = 1 };

template <typename T>
struct Window {
  // The window's reach on each side, (local_size - 1) / 2, but at most the
  // extent of its axis less one: what lies past that is padding, whose zero
  // squares change no sum. Across channels `pad` is used, within a channel
  // `pad_h` and `pad_w`.
  int64_t pad, pad_h, pad_w;
  // scale = (sum / divisor) * multiplier + offset (within a channel), or
  // sum * multiplier + offset (across), each step rounded to T as libtorch
  // rounds its scalar ops.
  T divisor, multiplier, offset;
  T gradient_coefficient;  // 2 * alpha * beta / (n or n^2)
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

// acc[i] += x[i]^2 (squares) or x[i] (plain).
template <typename T>
CAFFE_TCH_VECTOR_CLONES void accumulate(const T* x, T* acc, int64_t count, bool squares) {
  if (squares) {
    for (int64_t i = 0; i < count; ++i) acc[i] += x[i] * x[i];
  } else {
    for (int64_t i = 0; i < count; ++i) acc[i] += x[i];
  }
}

template <typename T>
CAFFE_TCH_VECTOR_CLONES void affine_across(T* sum, int64_t count, const Window<T>& w) {
  for (int64_t i = 0; i < count; ++i) sum[i] = sum[i] * w.multiplier + w.offset;
}

// scale[c] = k + alpha/n * sum of squares[c + j], j <= 2 * pad; `squares`
// has the window's zero padding at both ends.
template <typename T>
CAFFE_TCH_VECTOR_CLONES void window_scale(const T* squares, T* scale, int64_t count, const Window<T>& w) {
  for (int64_t c = 0; c < count; ++c) scale[c] = squares[c];
  for (int64_t j = 1; j <= 2 * w.pad; ++j) {
    const T* shifted = squares + j;
    for (int64_t c = 0; c < count; ++c) scale[c] += shifted[c];
  }
  affine_across(scale, count, w);
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

// ACROSS_CHANNELS on an NCHW blob: a unit is kTile pixels of one image over
// all its channels (channel c of the unit starts at base + c * pixels).
struct ChannelTiles {
  int64_t channels, pixels, tiles, units, grain;
  explicit ChannelTiles(const at::Tensor& x)
      : channels(x.size(1)),
        pixels(x.size(2) * x.size(3)),
        tiles((pixels + kTile - 1) / kTile),
        units(x.size(0) * tiles),
        grain(std::max<int64_t>(1, kGrainElements / (channels * kTile))) {}
  // The unit's first element and its pixel count.
  std::pair<int64_t, int64_t> unit(int64_t u) const {
    const int64_t image = u / tiles, first = (u % tiles) * kTile;
    return {image * channels * pixels + first, std::min(kTile, pixels - first)};
  }
  // The channels of c's window: [lo, hi].
  static std::pair<int64_t, int64_t> window(int64_t c, int64_t pad, int64_t channels) {
    return {std::max<int64_t>(0, c - pad), std::min(channels - 1, c + pad)};
  }
};

// y, and scale where `scale_out` is given (a blob like x). For the general
// beta the pass writes only the scale, into `scale_out` or else into y, and
// the caller raises it.
template <typename T>
void across_forward(const at::Tensor& x, at::Tensor& y, at::Tensor* scale_out, const Window<T>& w) {
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
        }
      }
    });
    return;
  }
  const ChannelTiles t(x);
  at::parallel_for(0, t.units, t.grain, [&](int64_t begin, int64_t end) {
    std::vector<T> sum(kTile), factor(kTile);
    for (int64_t u = begin; u < end; ++u) {
      const auto [base, count] = t.unit(u);
      for (int64_t c = 0; c < channels; ++c) {
        const int64_t at_c = base + c * pixels;
        T* sp = sd != nullptr ? sd + at_c : (general ? yd + at_c : sum.data());
        // The window's squares summed lowest first; starting from zero, as
        // the padding would, leaves every partial sum the same.
        std::fill(sp, sp + count, T(0));
        const auto [lo, hi] = ChannelTiles::window(c, w.pad, channels);
        for (int64_t cc = lo; cc <= hi; ++cc) accumulate(xd + base + cc * pixels, sp, count, true);
        affine_across(sp, count, w);
        if (!general) {
          powers(sp, factor.data(), count, w.power);
          multiply(xd + at_c, factor.data(), yd + at_c, count);
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
Window<T> window_for(Region region, int64_t size, const at::Tensor& x, double alpha, double beta, double k) {
  const int64_t reach = (size - 1) / 2;
  auto clamp = [reach](int64_t extent) { return std::min(reach, std::max<int64_t>(extent - 1, 0)); };
  const bool across = region == Region::AcrossChannels;
  const double m = across ? static_cast<double>(size) : static_cast<double>(size) * static_cast<double>(size);
  return Window<T>{clamp(x.size(1)),
                   clamp(x.size(2)),
                   clamp(x.size(3)),
                   static_cast<T>(m),
                   static_cast<T>(across ? alpha / m : alpha),
                   static_cast<T>(across ? k : 1.0),
                   static_cast<T>(2.0 * alpha * beta / m),
                   power_for(beta)};
}

// out[r][i] = sum over dh < span_h, dw < span_w of padded[r + dh][dw * inner + i],
// for `rows` rows of `row_elems` floats; `padded` rows are `padded_row` floats.
// Both memory orders: a pixel is `inner` floats (C channels-last, 1 in a
// plane), so a shift by one pixel is a shift by `inner` floats.
template <typename T>
CAFFE_TCH_VECTOR_CLONES void box_sum_rows(const T* padded, T* out, int64_t rows, int64_t row_elems,
                                          int64_t padded_row, int64_t inner, int64_t span_h, int64_t span_w) {
  for (int64_t r = 0; r < rows; ++r) {
    T* acc = out + r * row_elems;
    for (int64_t i = 0; i < row_elems; ++i) acc[i] = T(0);
    for (int64_t dh = 0; dh < span_h; ++dh) {
      for (int64_t dw = 0; dw < span_w; ++dw) {
        const T* src = padded + (r + dh) * padded_row + dw * inner;
        for (int64_t i = 0; i < row_elems; ++i) acc[i] += src[i];
      }
    }
  }
}

// WITHIN_CHANNEL's units: `rows` output rows of one image (channels-last) or
// of one channel's plane (NCHW); both are contiguous runs of memory.
struct RowBlocks {
  int64_t planes, height, inner, row_elems, rows, blocks, pad_h, pad_w, padded_row;
  RowBlocks(const at::Tensor& x, int64_t pad_h_, int64_t pad_w_) : pad_h(pad_h_), pad_w(pad_w_) {
    const bool nhwc = channels_last(x);
    const int64_t n = x.size(0), c = x.size(1), w = x.size(3);
    height = x.size(2);
    inner = nhwc ? c : 1;
    planes = nhwc ? n : n * c;
    row_elems = w * inner;
    rows = std::max<int64_t>(1, std::min(height, kGrainElements / std::max<int64_t>(1, row_elems)));
    blocks = (height + rows - 1) / rows;
    padded_row = (w + 2 * pad_w) * inner;
  }
  // Fills `padded` ((rows + 2 * pad_h) x padded_row) with value(i) for the
  // unit's input rows h0 - pad_h .. h1 + pad_h - 1, zero outside the blob.
  template <typename T, typename RowValues>
  void gather(T* padded, int64_t plane, int64_t h0, int64_t count_rows, RowValues row_values) const {
    std::fill(padded, padded + (rows + 2 * pad_h) * padded_row, T(0));
    for (int64_t r = 0; r < count_rows + 2 * pad_h; ++r) {
      const int64_t h = h0 - pad_h + r;
      if (h < 0 || h >= height) continue;
      row_values((plane * height + h) * row_elems, padded + r * padded_row + pad_w * inner);
    }
  }
};

template <typename T>
CAFFE_TCH_VECTOR_CLONES void squares_of(const T* x, T* out, int64_t count) {
  for (int64_t i = 0; i < count; ++i) out[i] = x[i] * x[i];
}

template <typename T>
CAFFE_TCH_VECTOR_CLONES void affine_within(T* sum, int64_t count, const Window<T>& w) {
  for (int64_t i = 0; i < count; ++i) sum[i] = (sum[i] / w.divisor) * w.multiplier + w.offset;
}

template <typename T>
void within_forward(const at::Tensor& x, at::Tensor& y, at::Tensor* scale_out, const Window<T>& w) {
  const T* xd = x.const_data_ptr<T>();
  T* yd = y.mutable_data_ptr<T>();
  T* sd = scale_out != nullptr ? scale_out->mutable_data_ptr<T>() : nullptr;
  const bool general = w.power == Power::General;
  const RowBlocks u(x, w.pad_h, w.pad_w);
  at::parallel_for(0, u.planes * u.blocks, 1, [&](int64_t begin, int64_t end) {
    std::vector<T> padded((u.rows + 2 * u.pad_h) * u.padded_row), scale(u.rows * u.row_elems),
        factor(u.rows * u.row_elems);
    for (int64_t unit = begin; unit < end; ++unit) {
      const int64_t plane = unit / u.blocks, h0 = (unit % u.blocks) * u.rows;
      const int64_t count_rows = std::min(u.rows, u.height - h0);
      const int64_t first = (plane * u.height + h0) * u.row_elems, count = count_rows * u.row_elems;
      u.gather(padded.data(), plane, h0, count_rows,
               [&](int64_t offset, T* dst) { squares_of(xd + offset, dst, u.row_elems); });
      T* sp = sd != nullptr ? sd + first : (general ? yd + first : scale.data());
      box_sum_rows(padded.data(), sp, count_rows, u.row_elems, u.padded_row, u.inner, 2 * u.pad_h + 1,
                   2 * u.pad_w + 1);
      affine_within(sp, count, w);
      if (!general) {
        powers(sp, factor.data(), count, w.power);
        multiply(xd + first, factor.data(), yd + first, count);
      }
    }
  });
}

template <typename T>
at::Tensor forward_typed(Region region, const at::Tensor& x, int64_t size, double alpha, double beta, double k,
                         at::Tensor* scale) {
  Window<T> w = window_for<T>(region, size, x, alpha, beta, k);
  at::Tensor y = at::empty_like(x);  // keeps x's memory order
  if (scale != nullptr) {
    *scale = at::empty_like(x);
  }
  if (region == Region::AcrossChannels) {
    across_forward<T>(x, y, scale, w);
  } else {
    within_forward<T>(x, y, scale, w);
  }
  if (w.power == Power::General) {
    // The pass left the scale in *scale, or in y when there is none.
    at::Tensor factor = general_factor(scale != nullptr ? *scale : y, beta);
    y = factor.mul_(x);
  }
  return y;
}

at::Tensor lrn_forward(Region region, const at::Tensor& x, int64_t size, double alpha, double beta, double k,
                       at::Tensor* scale) {
  return x.scalar_type() == at::kDouble ? forward_typed<double>(region, x, size, alpha, beta, k, scale)
                                        : forward_typed<float>(region, x, size, alpha, beta, k, scale);
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

// The backward's inputs, in x's memory order; `factor` is scale^-beta
// precomputed for a beta with no closed form, else null.
template <typename T>
struct Gradients {
  const T *x, *scale, *dy, *factor;
  T* dx;
  const Window<T>& w;
  // scale^-beta over [offset, offset + count): the precomputed one, or `buffer` filled.
  const T* factor_at(int64_t offset, int64_t count, T* buffer) const {
    if (factor != nullptr) return factor + offset;
    powers(scale + offset, buffer, count, w.power);
    return buffer;
  }
};

template <typename T>
void across_backward(const at::Tensor& x, const Gradients<T>& g) {
  const Window<T>& w = g.w;
  const int64_t n = x.size(0), channels = x.size(1), pixels = x.size(2) * x.size(3);
  if (channels_last(x)) {
    const int64_t grain = std::max<int64_t>(1, kGrainElements / channels);
    at::parallel_for(0, n * pixels, grain, [&](int64_t begin, int64_t end) {
      std::vector<T> ratios(channels + 2 * w.pad, T(0)), sums(channels), factor(channels);
      for (int64_t q = begin; q < end; ++q) {
        const int64_t o = q * channels;
        const T* f = g.factor_at(o, channels, factor.data());
        ratio(g.dy + o, g.x + o, f, g.scale + o, ratios.data() + w.pad, channels);
        window_sum(ratios.data(), sums.data(), channels, 2 * w.pad + 1);
        input_gradient(g.dy + o, g.x + o, f, sums.data(), w.gradient_coefficient, g.dx + o, channels);
      }
    });
    return;
  }
  const ChannelTiles t(x);
  at::parallel_for(0, t.units, t.grain, [&](int64_t begin, int64_t end) {
    // Every channel's ratios over the tile, then each channel's window over them.
    std::vector<T> ratios(channels * kTile), sums(kTile), factor(kTile);
    for (int64_t u = begin; u < end; ++u) {
      const auto [base, count] = t.unit(u);
      for (int64_t c = 0; c < channels; ++c) {
        const int64_t o = base + c * pixels;
        ratio(g.dy + o, g.x + o, g.factor_at(o, count, factor.data()), g.scale + o, ratios.data() + c * kTile, count);
      }
      for (int64_t c = 0; c < channels; ++c) {
        const int64_t o = base + c * pixels;
        std::fill(sums.begin(), sums.begin() + count, T(0));
        const auto [lo, hi] = ChannelTiles::window(c, w.pad, channels);
        for (int64_t cc = lo; cc <= hi; ++cc) accumulate(ratios.data() + cc * kTile, sums.data(), count, false);
        input_gradient(g.dy + o, g.x + o, g.factor_at(o, count, factor.data()), sums.data(), w.gradient_coefficient,
                       g.dx + o, count);
      }
    }
  });
}

template <typename T>
void within_backward(const at::Tensor& x, const Gradients<T>& g) {
  const RowBlocks u(x, g.w.pad_h, g.w.pad_w);
  at::parallel_for(0, u.planes * u.blocks, 1, [&](int64_t begin, int64_t end) {
    std::vector<T> padded((u.rows + 2 * u.pad_h) * u.padded_row), sums(u.rows * u.row_elems),
        factor(std::max(u.rows, int64_t(1)) * u.row_elems);
    for (int64_t unit = begin; unit < end; ++unit) {
      const int64_t plane = unit / u.blocks, h0 = (unit % u.blocks) * u.rows;
      const int64_t count_rows = std::min(u.rows, u.height - h0);
      const int64_t first = (plane * u.height + h0) * u.row_elems, count = count_rows * u.row_elems;
      // The ratios of the rows the unit's windows reach, zero outside the blob.
      u.gather(padded.data(), plane, h0, count_rows, [&](int64_t offset, T* dst) {
        ratio(g.dy + offset, g.x + offset, g.factor_at(offset, u.row_elems, factor.data()), g.scale + offset, dst,
              u.row_elems);
      });
      box_sum_rows(padded.data(), sums.data(), count_rows, u.row_elems, u.padded_row, u.inner, 2 * u.pad_h + 1,
                   2 * u.pad_w + 1);
      input_gradient(g.dy + first, g.x + first, g.factor_at(first, count, factor.data()), sums.data(),
                     g.w.gradient_coefficient, g.dx + first, count);
    }
  });
}

template <typename T>
at::Tensor backward_typed(Region region, const at::Tensor& x, const at::Tensor& scale, const at::Tensor& dy_any,
                          int64_t size, double alpha, double beta, double k) {
  Window<T> w = window_for<T>(region, size, x, alpha, beta, k);
  at::Tensor dy = dy_any.contiguous(x.suggest_memory_format());
  at::Tensor factor_all = w.power == Power::General ? general_factor(scale, beta) : at::Tensor();
  at::Tensor dx = at::empty_like(x);
  Gradients<T> g{x.const_data_ptr<T>(),
                 scale.const_data_ptr<T>(),
                 dy.const_data_ptr<T>(),
                 factor_all.defined() ? factor_all.const_data_ptr<T>() : nullptr,
                 dx.mutable_data_ptr<T>(),
                 w};
  if (region == Region::AcrossChannels) {
    across_backward<T>(x, g);
  } else {
    within_backward<T>(x, g);
  }
  return dx;
}

at::Tensor lrn_backward(Region region, const at::Tensor& x, const at::Tensor& scale, const at::Tensor& dy,
                        int64_t size, double alpha, double beta, double k) {
  return x.scalar_type() == at::kDouble ? backward_typed<double>(region, x, scale, dy, size, alpha, beta, k)
                                        : backward_typed<float>(region, x, scale, dy, size, alpha, beta, k);
}

struct LrnNode : public torch::autograd::Function<LrnNode> {
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& x, int64_t region,
                            int64_t size, double alpha, double beta, double k) {
    at::Tensor scale;
    at::Tensor y = lrn_forward(static_cast<Region>(region), x, size, alpha, beta, k, &scale);
    ctx->save_for_backward({x, scale});
    ctx->saved_data["region"] = region;
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
      dx = lrn_backward(static_cast<Region>(ctx->saved_data["region"].toInt()), saved[0], saved[1], grads[0],
                        ctx->saved_data["size"].toInt(), ctx->saved_data["alpha"].toDouble(),
                        ctx->saved_data["beta"].toDouble(), ctx->saved_data["k"].toDouble());
    }
    return {dx, at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

}  // namespace

extern "C" {

// LRN of x (tch's C_tensor, an at::Tensor*), region 0 ACROSS_CHANNELS or 1
// WITHIN_CHANNEL. When x is a 4-D CPU float or double tensor, contiguous in
// NCHW or channels-last order, *out is a new at::Tensor* (caller-owned)
// holding y: computed in one pass, or, where autograd records, through one
// autograd node with the backward above. Otherwise *out stays null and the
// caller's tensor-op path runs. Returns null, or a malloc'd message if
// libtorch threw.
char* caffe_tch_lrn(void* x, int64_t region, int64_t size, double alpha, double beta, double k, void** out) {
  return caffe_shim::guarded([&] {
    *out = nullptr;
    const at::Tensor& xt = *static_cast<at::Tensor*>(x);
    bool applicable = xt.dim() == 4 && xt.device().is_cpu() &&
                      (xt.scalar_type() == at::kFloat || xt.scalar_type() == at::kDouble) && size >= 1 &&
                      size % 2 == 1 && xt.numel() > 0 && (region == 0 || region == 1) &&
                      (xt.is_contiguous() || xt.is_contiguous(at::MemoryFormat::ChannelsLast));
    if (!applicable) {
      return;
    }
    if (c10::GradMode::is_enabled() && xt.requires_grad()) {
      *out = new at::Tensor(LrnNode::apply(xt, region, size, alpha, beta, k));
    } else {
      *out = new at::Tensor(lrn_forward(static_cast<Region>(region), xt, size, alpha, beta, k, nullptr));
    }
  });
}

}  // extern "C"
