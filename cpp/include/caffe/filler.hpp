// caffe-tch's C++ interface: Caffe's caffe/filler.hpp, the fillers a layer
// of the program's own uses for its learnable blobs in LayerSetUp
// (GetFiller<Dtype>(param)->Fill(blob)), with Caffe's rules for each type.
// Their draws come from Caffe's generator (caffe_rng_uniform and the like,
// which Caffe::set_random_seed seeds); a net's own layers fill theirs in
// caffe-tch, from libtorch's.
#ifndef CAFFE_TCH_FILLER_HPP_
#define CAFFE_TCH_FILLER_HPP_

#include <cmath>
#include <stdexcept>
#include <string>
#include <vector>

#include "caffe/caffe.hpp"
#include "caffe/util/math_functions.hpp"

namespace caffe {

template <typename Dtype>
class Filler {
 public:
  explicit Filler(const FillerParameter& param) : filler_param_(param) {}
  virtual ~Filler() {}
  virtual void Fill(Blob<Dtype>* blob) = 0;

 protected:
  // Caffe's fillers other than Gaussian refuse `sparse`.
  void refuse_sparse(const char* type) const {
    if (filler_param_.sparse() != -1)
      throw std::runtime_error(std::string("the ") + type + " filler does not take sparse");
  }
  // The number of inputs (or outputs, or their mean) a unit of `blob` sees,
  // as variance_norm asks: Xavier's and MSRA's n.
  Dtype fan(const Blob<Dtype>* blob) const {
    if (blob->num_axes() < 1 || blob->count() == 0 || blob->shape(0) == 0)
      throw std::runtime_error("a Xavier or MSRA filler needs a blob with values");
    const Dtype fan_in = static_cast<Dtype>(blob->count() / blob->shape(0));
    const Dtype fan_out =
        static_cast<Dtype>(blob->num_axes() > 1 && blob->shape(1) > 0 ? blob->count() / blob->shape(1) : blob->count());
    switch (filler_param_.variance_norm()) {
      case FillerParameter_VarianceNorm_FAN_OUT:
        return fan_out;
      case FillerParameter_VarianceNorm_AVERAGE:
        return (fan_in + fan_out) / Dtype(2);
      default:
        return fan_in;
    }
  }
  FillerParameter filler_param_;
};

// Every value `value` (0 by default).
template <typename Dtype>
class ConstantFiller : public Filler<Dtype> {
 public:
  explicit ConstantFiller(const FillerParameter& param) : Filler<Dtype>(param) {}
  void Fill(Blob<Dtype>* blob) override {
    this->refuse_sparse("constant");
    Dtype* data = blob->mutable_cpu_data();
    const Dtype value = static_cast<Dtype>(this->filler_param_.value());
    for (int i = 0; i < blob->count(); ++i) data[i] = value;
  }
};

// Uniform on [min, max].
template <typename Dtype>
class UniformFiller : public Filler<Dtype> {
 public:
  explicit UniformFiller(const FillerParameter& param) : Filler<Dtype>(param) {}
  void Fill(Blob<Dtype>* blob) override {
    this->refuse_sparse("uniform");
    caffe_rng_uniform<Dtype>(blob->count(), static_cast<Dtype>(this->filler_param_.min()),
                             static_cast<Dtype>(this->filler_param_.max()), blob->mutable_cpu_data());
  }
};

// Normal with mean and std; with `sparse` s, each value kept with
// probability s / (the blob's first axis), the others 0.
template <typename Dtype>
class GaussianFiller : public Filler<Dtype> {
 public:
  explicit GaussianFiller(const FillerParameter& param) : Filler<Dtype>(param) {}
  void Fill(Blob<Dtype>* blob) override {
    Dtype* data = blob->mutable_cpu_data();
    caffe_rng_gaussian<Dtype>(blob->count(), static_cast<Dtype>(this->filler_param_.mean()),
                              static_cast<Dtype>(this->filler_param_.std()), data);
    const int sparse = this->filler_param_.sparse();
    if (sparse < 0) return;
    if (blob->num_axes() < 1 || blob->shape(0) == 0)
      throw std::runtime_error("a sparse Gaussian filler needs a blob with a first axis");
    const Dtype keep = static_cast<Dtype>(sparse) / static_cast<Dtype>(blob->shape(0));
    std::vector<int> kept(static_cast<size_t>(blob->count()));
    caffe_rng_bernoulli<Dtype, int>(blob->count(), keep, kept.data());
    for (int i = 0; i < blob->count(); ++i) data[i] *= kept[static_cast<size_t>(i)];
  }
};

// Uniform on [0, 1], then each item (along the first axis) scaled to sum 1.
template <typename Dtype>
class PositiveUnitballFiller : public Filler<Dtype> {
 public:
  explicit PositiveUnitballFiller(const FillerParameter& param) : Filler<Dtype>(param) {}
  void Fill(Blob<Dtype>* blob) override {
    this->refuse_sparse("positive_unitball");
    Dtype* data = blob->mutable_cpu_data();
    caffe_rng_uniform<Dtype>(blob->count(), Dtype(0), Dtype(1), data);
    const int num = blob->num_axes() > 0 ? blob->shape(0) : 1;
    if (num == 0) return;
    const int dim = blob->count() / num;
    for (int i = 0; i < num; ++i) {
      Dtype sum = 0;
      for (int j = 0; j < dim; ++j) sum += data[i * dim + j];
      for (int j = 0; j < dim; ++j) data[i * dim + j] /= sum;
    }
  }
};

// Uniform on [-sqrt(3 / n), sqrt(3 / n)], n as variance_norm says.
template <typename Dtype>
class XavierFiller : public Filler<Dtype> {
 public:
  explicit XavierFiller(const FillerParameter& param) : Filler<Dtype>(param) {}
  void Fill(Blob<Dtype>* blob) override {
    this->refuse_sparse("xavier");
    const Dtype scale = std::sqrt(Dtype(3) / this->fan(blob));
    caffe_rng_uniform<Dtype>(blob->count(), -scale, scale, blob->mutable_cpu_data());
  }
};

// Normal with mean 0 and std sqrt(2 / n), n as variance_norm says.
template <typename Dtype>
class MSRAFiller : public Filler<Dtype> {
 public:
  explicit MSRAFiller(const FillerParameter& param) : Filler<Dtype>(param) {}
  void Fill(Blob<Dtype>* blob) override {
    this->refuse_sparse("msra");
    const Dtype std = std::sqrt(Dtype(2) / this->fan(blob));
    caffe_rng_gaussian<Dtype>(blob->count(), Dtype(0), std, blob->mutable_cpu_data());
  }
};

// Bilinear upsampling weights for a Deconvolution: a 4-D blob of square
// kernels.
template <typename Dtype>
class BilinearFiller : public Filler<Dtype> {
 public:
  explicit BilinearFiller(const FillerParameter& param) : Filler<Dtype>(param) {}
  void Fill(Blob<Dtype>* blob) override {
    this->refuse_sparse("bilinear");
    if (blob->num_axes() != 4) throw std::runtime_error("the bilinear filler needs a 4-D blob");
    if (blob->width() != blob->height() || blob->width() == 0)
      throw std::runtime_error("the bilinear filler needs square kernels");
    Dtype* data = blob->mutable_cpu_data();
    const int side = blob->width();
    const int f = (side + 1) / 2;
    const Dtype centre = static_cast<Dtype>(2 * f - 1 - f % 2) / (Dtype(2) * f);
    for (int i = 0; i < blob->count(); ++i) {
      const Dtype x = static_cast<Dtype>(i % side), y = static_cast<Dtype>((i / side) % side);
      data[i] = (1 - std::fabs(x / f - centre)) * (1 - std::fabs(y / f - centre));
    }
  }
};

// The filler `param.type()` names; an unknown name is an error naming it.
template <typename Dtype>
Filler<Dtype>* GetFiller(const FillerParameter& param) {
  const std::string& type = param.type();
  if (type == "constant") return new ConstantFiller<Dtype>(param);
  if (type == "gaussian") return new GaussianFiller<Dtype>(param);
  if (type == "positive_unitball") return new PositiveUnitballFiller<Dtype>(param);
  if (type == "uniform") return new UniformFiller<Dtype>(param);
  if (type == "xavier") return new XavierFiller<Dtype>(param);
  if (type == "msra") return new MSRAFiller<Dtype>(param);
  if (type == "bilinear") return new BilinearFiller<Dtype>(param);
  throw std::runtime_error("Unknown filler name: " + type);
}

}  // namespace caffe

#endif  // CAFFE_TCH_FILLER_HPP_
