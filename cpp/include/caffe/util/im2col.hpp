// caffe-tch's C++ interface: Caffe's caffe/util/im2col.hpp (CPU half), which
// a fork's convolution-like layers call: im2col_cpu lays out each output
// position's receptive field (channels x kernel_h x kernel_w rows, one
// column per output position, 0 for padding) so a convolution is one GEMM;
// col2im_cpu adds columns back into an image, its adjoint. Output sizes are
// Caffe's: (in + 2·pad − (dilation·(kernel − 1) + 1)) / stride + 1, in C's
// integer division (a size below 1 leaves no columns, as in Caffe).
// Differences: the n-dimensional im2col_nd_cpu/col2im_nd_cpu and the GPU
// half are not declared; a kernel, stride or dilation below 1, or a negative
// size or pad, throws std::runtime_error.
#ifndef CAFFE_TCH_UTIL_IM2COL_HPP_
#define CAFFE_TCH_UTIL_IM2COL_HPP_

#include <stdexcept>

namespace caffe {

namespace internal {
// One output axis's length, as Caffe computes it.
inline int im2col_output_size(int in, int kernel, int pad, int stride, int dilation) {
  if (in < 0 || kernel < 1 || pad < 0 || stride < 1 || dilation < 1)
    throw std::runtime_error("im2col: bad geometry (a negative size or pad, or a kernel, stride or dilation below 1)");
  return (in + 2 * pad - (dilation * (kernel - 1) + 1)) / stride + 1;
}
}  // namespace internal

namespace internal {
// Visits the column matrix in order: visit(column entry, image index), the
// index -1 where the entry falls in the padding.
template <typename Visit>
void for_each_column_entry(const int channels, const int height, const int width, const int kernel_h,
                           const int kernel_w, const int pad_h, const int pad_w, const int stride_h, const int stride_w,
                           const int dilation_h, const int dilation_w, Visit visit) {
  const int out_h = im2col_output_size(height, kernel_h, pad_h, stride_h, dilation_h);
  const int out_w = im2col_output_size(width, kernel_w, pad_w, stride_w, dilation_w);
  int entry = 0;
  for (int c = 0; c < channels; ++c)
    for (int kh = 0; kh < kernel_h; ++kh)
      for (int kw = 0; kw < kernel_w; ++kw)
        for (int oh = 0; oh < out_h; ++oh) {
          const int ih = oh * stride_h - pad_h + kh * dilation_h;
          for (int ow = 0; ow < out_w; ++ow, ++entry) {
            const int iw = ow * stride_w - pad_w + kw * dilation_w;
            const bool inside = ih >= 0 && ih < height && iw >= 0 && iw < width;
            visit(entry, inside ? (c * height + ih) * width + iw : -1);
          }
        }
}
}  // namespace internal

template <typename Dtype>
void im2col_cpu(const Dtype* data_im, const int channels, const int height, const int width, const int kernel_h,
                const int kernel_w, const int pad_h, const int pad_w, const int stride_h, const int stride_w,
                const int dilation_h, const int dilation_w, Dtype* data_col) {
  internal::for_each_column_entry(channels, height, width, kernel_h, kernel_w, pad_h, pad_w, stride_h, stride_w,
                                  dilation_h, dilation_w, [&](int entry, int pixel) {
                                    data_col[entry] = pixel >= 0 ? data_im[pixel] : Dtype(0);
                                  });
}

template <typename Dtype>
void col2im_cpu(const Dtype* data_col, const int channels, const int height, const int width, const int kernel_h,
                const int kernel_w, const int pad_h, const int pad_w, const int stride_h, const int stride_w,
                const int dilation_h, const int dilation_w, Dtype* data_im) {
  for (int i = 0; i < channels * height * width; ++i) data_im[i] = Dtype(0);
  internal::for_each_column_entry(channels, height, width, kernel_h, kernel_w, pad_h, pad_w, stride_h, stride_w,
                                  dilation_h, dilation_w, [&](int entry, int pixel) {
                                    if (pixel >= 0) data_im[pixel] += data_col[entry];
                                  });
}

}  // namespace caffe

#endif  // CAFFE_TCH_UTIL_IM2COL_HPP_
