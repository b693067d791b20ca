// caffe-tch's C++ interface: Caffe's caffe/util/math_functions.hpp, the CPU
// half (caffe_cpu_gemm, caffe_axpy, caffe_copy, caffe_rng_uniform and the
// rest), for float and double, as programs and tools written against Caffe
// call them on blob memory. Matrix products run in libcaffe (libtorch's GEMM);
// the element-wise functions are here. The random functions draw from
// caffe_rng() (caffe/util/rng.hpp), the Mersenne Twister Caffe's
// boost::mt19937 is, which Caffe::set_random_seed seeds: caffe_rng_rand()
// gives Caffe's numbers for a seed; the uniform, Gaussian and Bernoulli
// draws are the standard library's distributions over it, not Boost's
// arithmetic, so they follow the same laws with other values.
// Differences: the caffe_gpu_* functions are not declared (a CPU build of
// Caffe leaves them out too); a bad argument (a uniform range with a > b, a
// Gaussian with sigma <= 0, a probability outside [0, 1], a transpose flag
// that is not CBLAS's) throws std::runtime_error where Caffe's CHECK aborts.
#ifndef CAFFE_TCH_UTIL_MATH_FUNCTIONS_HPP_
#define CAFFE_TCH_UTIL_MATH_FUNCTIONS_HPP_

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <stdexcept>
#include <string>
#include <type_traits>

#include "caffe/caffe.hpp"
#include "caffe/util/rng.hpp"

// CBLAS's transpose flags, from the system's cblas.h where there is one (as
// Caffe's header includes it), else the same values declared here.
#if defined(__has_include)
#if __has_include(<cblas.h>)
#include <cblas.h>
#define CAFFE_TCH_HAS_CBLAS 1
#endif
#endif
#ifndef CAFFE_TCH_HAS_CBLAS
enum CBLAS_TRANSPOSE { CblasNoTrans = 111, CblasTrans = 112, CblasConjTrans = 113 };
#endif

extern "C" {
// C = alpha * op(A) * op(B) + beta * C, row-major, op(A) M x K, op(B) K x N;
// double_precision selects double arrays; transpose flags 0 (no) or 1 (yes).
// beta == 0 does not read C. 0, or -1 with caffe_tch_last_error().
int caffe_tch_gemm(int double_precision, int trans_a, int trans_b, int m, int n, int k, double alpha,
                   const void* a, const void* b, double beta, void* c);
// y = alpha * op(A) * x + beta * y, A M x N row-major; as caffe_tch_gemm.
int caffe_tch_gemv(int double_precision, int trans_a, int m, int n, double alpha, const void* a, const void* x,
                   double beta, void* y);
}

namespace caffe {

namespace internal {
inline int transposed(CBLAS_TRANSPOSE t) {
  if (t == CblasNoTrans) return 0;
  if (t == CblasTrans || t == CblasConjTrans) return 1;
  throw std::runtime_error("math_functions: a transpose flag is CblasNoTrans, CblasTrans or CblasConjTrans, not " +
                           std::to_string(static_cast<int>(t)));
}
template <typename Dtype>
inline int is_double() {
  static_assert(std::is_same<Dtype, float>::value || std::is_same<Dtype, double>::value,
                "Caffe's math functions are for float and double");
  return std::is_same<Dtype, double>::value ? 1 : 0;
}
}  // namespace internal

template <typename Dtype>
void caffe_cpu_gemm(const CBLAS_TRANSPOSE TransA, const CBLAS_TRANSPOSE TransB, const int M, const int N,
                    const int K, const Dtype alpha, const Dtype* A, const Dtype* B, const Dtype beta, Dtype* C) {
  internal::check(caffe_tch_gemm(internal::is_double<Dtype>(), internal::transposed(TransA),
                                 internal::transposed(TransB), M, N, K, alpha, A, B, beta, C) == 0);
}

template <typename Dtype>
void caffe_cpu_gemv(const CBLAS_TRANSPOSE TransA, const int M, const int N, const Dtype alpha, const Dtype* A,
                    const Dtype* x, const Dtype beta, Dtype* y) {
  internal::check(
      caffe_tch_gemv(internal::is_double<Dtype>(), internal::transposed(TransA), M, N, alpha, A, x, beta, y) == 0);
}

template <typename Dtype>
void caffe_axpy(const int N, const Dtype alpha, const Dtype* X, Dtype* Y) {
  for (int i = 0; i < N; ++i) Y[i] += alpha * X[i];
}

template <typename Dtype>
void caffe_cpu_axpby(const int N, const Dtype alpha, const Dtype* X, const Dtype beta, Dtype* Y) {
  for (int i = 0; i < N; ++i) Y[i] = alpha * X[i] + beta * Y[i];
}

template <typename Dtype>
void caffe_copy(const int N, const Dtype* X, Dtype* Y) {
  if (X != Y && N > 0) std::memcpy(Y, X, sizeof(Dtype) * N);
}

template <typename Dtype>
void caffe_set(const int N, const Dtype alpha, Dtype* Y) {
  for (int i = 0; i < N; ++i) Y[i] = alpha;
}

inline void caffe_memset(const size_t N, const int alpha, void* X) { std::memset(X, alpha, N); }

template <typename Dtype>
void caffe_add_scalar(const int N, const Dtype alpha, Dtype* Y) {
  for (int i = 0; i < N; ++i) Y[i] += alpha;
}

template <typename Dtype>
void caffe_scal(const int N, const Dtype alpha, Dtype* X) {
  for (int i = 0; i < N; ++i) X[i] *= alpha;
}

template <typename Dtype>
void caffe_cpu_scale(const int n, const Dtype alpha, const Dtype* x, Dtype* y) {
  for (int i = 0; i < n; ++i) y[i] = alpha * x[i];
}

template <typename Dtype>
void caffe_sqr(const int n, const Dtype* a, Dtype* y) {
  for (int i = 0; i < n; ++i) y[i] = a[i] * a[i];
}

template <typename Dtype>
void caffe_sqrt(const int n, const Dtype* a, Dtype* y) {
  for (int i = 0; i < n; ++i) y[i] = std::sqrt(a[i]);
}

template <typename Dtype>
void caffe_add(const int n, const Dtype* a, const Dtype* b, Dtype* y) {
  for (int i = 0; i < n; ++i) y[i] = a[i] + b[i];
}

template <typename Dtype>
void caffe_sub(const int n, const Dtype* a, const Dtype* b, Dtype* y) {
  for (int i = 0; i < n; ++i) y[i] = a[i] - b[i];
}

template <typename Dtype>
void caffe_mul(const int n, const Dtype* a, const Dtype* b, Dtype* y) {
  for (int i = 0; i < n; ++i) y[i] = a[i] * b[i];
}

template <typename Dtype>
void caffe_div(const int n, const Dtype* a, const Dtype* b, Dtype* y) {
  for (int i = 0; i < n; ++i) y[i] = a[i] / b[i];
}

template <typename Dtype>
void caffe_powx(const int n, const Dtype* a, const Dtype b, Dtype* y) {
  for (int i = 0; i < n; ++i) y[i] = std::pow(a[i], b);
}

template <typename Dtype>
void caffe_exp(const int n, const Dtype* a, Dtype* y) {
  for (int i = 0; i < n; ++i) y[i] = std::exp(a[i]);
}

template <typename Dtype>
void caffe_log(const int n, const Dtype* a, Dtype* y) {
  for (int i = 0; i < n; ++i) y[i] = std::log(a[i]);
}

template <typename Dtype>
void caffe_abs(const int n, const Dtype* a, Dtype* y) {
  for (int i = 0; i < n; ++i) y[i] = std::fabs(a[i]);
}

template <typename Dtype>
Dtype caffe_cpu_strided_dot(const int n, const Dtype* x, const int incx, const Dtype* y, const int incy) {
  Dtype sum = 0;
  for (int i = 0; i < n; ++i) sum += x[static_cast<std::ptrdiff_t>(i) * incx] * y[static_cast<std::ptrdiff_t>(i) * incy];
  return sum;
}

template <typename Dtype>
Dtype caffe_cpu_dot(const int n, const Dtype* x, const Dtype* y) {
  return caffe_cpu_strided_dot(n, x, 1, y, 1);
}

template <typename Dtype>
Dtype caffe_cpu_asum(const int n, const Dtype* x) {
  Dtype sum = 0;
  for (int i = 0; i < n; ++i) sum += std::fabs(x[i]);
  return sum;
}

// -1, 0 or 1.
template <typename Dtype>
inline int8_t caffe_sign(Dtype val) {
  return static_cast<int8_t>((Dtype(0) < val) - (val < Dtype(0)));
}

template <typename Dtype>
void caffe_cpu_sign(const int n, const Dtype* x, Dtype* y) {
  for (int i = 0; i < n; ++i) y[i] = caffe_sign<Dtype>(x[i]);
}

// 1 where the sign bit is set (-0 included), else 0.
template <typename Dtype>
void caffe_cpu_sgnbit(const int n, const Dtype* x, Dtype* y) {
  for (int i = 0; i < n; ++i) y[i] = static_cast<Dtype>(std::signbit(x[i]));
}

template <typename Dtype>
void caffe_cpu_fabs(const int n, const Dtype* x, Dtype* y) {
  caffe_abs(n, x, y);
}

// The next draw of Caffe's generator.
inline unsigned int caffe_rng_rand() { return static_cast<unsigned int>((*caffe_rng())()); }

// The smallest value above b.
template <typename Dtype>
Dtype caffe_nextafter(const Dtype b) {
  return std::nextafter(b, std::numeric_limits<Dtype>::max());
}

// n draws uniform on [a, b] (b included, as in Caffe).
template <typename Dtype>
void caffe_rng_uniform(const int n, const Dtype a, const Dtype b, Dtype* r) {
  if (!(a <= b)) throw std::runtime_error("caffe_rng_uniform: the range's a is above its b");
  std::uniform_real_distribution<Dtype> draw(a, caffe_nextafter<Dtype>(b));
  for (int i = 0; i < n; ++i) r[i] = draw(*caffe_rng());
}

template <typename Dtype>
void caffe_rng_gaussian(const int n, const Dtype mu, const Dtype sigma, Dtype* r) {
  if (!(sigma > 0)) throw std::runtime_error("caffe_rng_gaussian: sigma is not above 0");
  std::normal_distribution<Dtype> draw(mu, sigma);
  for (int i = 0; i < n; ++i) r[i] = draw(*caffe_rng());
}

template <typename Dtype, typename Int>
void caffe_rng_bernoulli(const int n, const Dtype p, Int* r) {
  static_assert(std::is_same<Int, int>::value || std::is_same<Int, unsigned int>::value,
                "caffe_rng_bernoulli writes int or unsigned int");
  if (!(p >= 0 && p <= 1)) throw std::runtime_error("caffe_rng_bernoulli: p is outside [0, 1]");
  std::bernoulli_distribution draw(static_cast<double>(p));
  for (int i = 0; i < n; ++i) r[i] = draw(*caffe_rng()) ? 1 : 0;
}

}  // namespace caffe

#endif  // CAFFE_TCH_UTIL_MATH_FUNCTIONS_HPP_
