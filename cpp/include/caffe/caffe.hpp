// caffe-tch's C++ interface: the part of BVLC Caffe's `caffe/caffe.hpp` that
// deployment programs use, over libcaffe.so (caffe-tch; link with -lcaffe).
// A program written against Caffe's Net and Blob (Caffe's
// examples/cpp_classification, most model-zoo demos) compiles unchanged:
//
//   Caffe::set_mode(Caffe::CPU);
//   shared_ptr<Net<float> > net(new Net<float>("deploy.prototxt", TEST));
//   net->CopyTrainedLayersFrom("weights.caffemodel");
//   Blob<float>* input = net->input_blobs()[0];
//   input->Reshape(1, 3, 227, 227); net->Reshape();
//   float* x = input->mutable_cpu_data();   // write the image here
//   net->Forward();
//   const float* p = net->output_blobs()[0]->cpu_data();
//
// What differs from BVLC Caffe: only float nets; a net's blobs are read and
// written on the host (cpu_data, mutable_cpu_data; the gpu_ accessors are
// not here, and a net in GPU mode copies its inputs to the device at
// Forward); a blob that is not a net input is read through a host copy that
// keeps its address and gets each Forward's values, so writing it changes
// only the copy (a layer's blobs, its weights, are the net's own memory on a
// CPU net); no Backward, solvers or layers' own Forward (use `caffe train`
// or pycaffe); errors are thrown as std::runtime_error with caffe-tch's
// one-line message (Caffe's CHECKs abort instead).
#ifndef CAFFE_TCH_CAFFE_HPP_
#define CAFFE_TCH_CAFFE_HPP_

// What Caffe's headers bring along, which its programs use without
// including it themselves (std::ifstream, std::cout, std::setprecision, ...).
#include <algorithm>
#include <climits>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <map>
#include <memory>
#include <set>
#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

// Caffe's header brings glog's CHECK and LOG macros, which its programs use
// without including glog themselves. Where glog is not installed, a minimal
// stand-in: CHECK* and LOG(FATAL) print their message and abort
// (-DCAFFE_TCH_NO_GLOG asks for the stand-in where glog is installed).
#if defined(__has_include) && !defined(CAFFE_TCH_NO_GLOG)
#if __has_include(<glog/logging.h>)
#include <glog/logging.h>
#define CAFFE_TCH_HAS_GLOG 1
#endif
#endif
// Caffe's header brings gflags too (DEFINE_string and the rest, which the
// SSD fork's ssd_detect.cpp uses); where it is installed, so does this one
// (not with -DCAFFE_TCH_NO_GLOG, which goes without both).
#if defined(__has_include) && !defined(CAFFE_TCH_NO_GLOG)
#if __has_include(<gflags/gflags.h>)
#include <gflags/gflags.h>
#endif
#endif
#ifndef CAFFE_TCH_HAS_GLOG
#include <cstdlib>
#include <iostream>
#include <sstream>
namespace caffe_tch_log {
class Message {
 public:
  Message(const char* file, int line, bool fatal) : fatal_(fatal) { s_ << file << ":" << line << "] "; }
  ~Message() {
    std::cerr << s_.str() << std::endl;
    if (fatal_) std::abort();
  }
  std::ostream& stream() { return s_; }

 private:
  bool fatal_;
  std::ostringstream s_;
};
struct Voidify {
  void operator&(std::ostream&) {}
};
}  // namespace caffe_tch_log
namespace google {
inline void InitGoogleLogging(const char*) {}
}  // namespace google
#define CAFFE_TCH_LOG_INFO caffe_tch_log::Message(__FILE__, __LINE__, false).stream()
#define CAFFE_TCH_LOG_WARNING caffe_tch_log::Message(__FILE__, __LINE__, false).stream()
#define CAFFE_TCH_LOG_ERROR caffe_tch_log::Message(__FILE__, __LINE__, false).stream()
#define CAFFE_TCH_LOG_FATAL caffe_tch_log::Message(__FILE__, __LINE__, true).stream()
#define LOG(severity) CAFFE_TCH_LOG_##severity
#define CHECK(condition) \
  (condition) ? (void)0 : caffe_tch_log::Voidify() & LOG(FATAL) << "Check failed: " #condition " "
#define CHECK_OP(a, b, op) CHECK((a)op(b))
#define CHECK_EQ(a, b) CHECK_OP(a, b, ==)
#define CHECK_NE(a, b) CHECK_OP(a, b, !=)
#define CHECK_LT(a, b) CHECK_OP(a, b, <)
#define CHECK_LE(a, b) CHECK_OP(a, b, <=)
#define CHECK_GT(a, b) CHECK_OP(a, b, >)
#define CHECK_GE(a, b) CHECK_OP(a, b, >=)
#endif

extern "C" {
struct CaffeTchNet;
struct CaffeTchBlobProto;
const char* caffe_tch_last_error();
int caffe_tch_set_mode(int gpu);
int caffe_tch_set_device(int id);
void caffe_tch_set_random_seed(uint64_t seed);
CaffeTchNet* caffe_tch_net_new(const char* param_file, int phase, int level, const char* const* stages,
                               int n_stages);
void caffe_tch_net_free(CaffeTchNet* net);
int caffe_tch_net_copy_trained_layers_from(CaffeTchNet* net, const char* file);
int caffe_tch_net_count(CaffeTchNet* net, int which);
const char* caffe_tch_net_name(CaffeTchNet* net, int which, int i);
int caffe_tch_net_blob_shape(CaffeTchNet* net, const char* name, int64_t* dims, int max);
int caffe_tch_net_reshape_input(CaffeTchNet* net, const char* name, const int64_t* dims, int n);
int caffe_tch_net_reshape(CaffeTchNet* net);
float* caffe_tch_net_blob_data(CaffeTchNet* net, const char* name);
int caffe_tch_net_layer_blob_count(CaffeTchNet* net, int layer);
int caffe_tch_net_layer_blob_shape(CaffeTchNet* net, int layer, int j, int64_t* dims, int max);
float* caffe_tch_net_layer_blob_data(CaffeTchNet* net, int layer, int j);
int caffe_tch_net_forward(CaffeTchNet* net, float* loss);
CaffeTchBlobProto* caffe_tch_blob_proto_read(const char* file);
int caffe_tch_blob_proto_shape(const CaffeTchBlobProto* blob, int64_t* dims, int max);
const float* caffe_tch_blob_proto_data(const CaffeTchBlobProto* blob);
void caffe_tch_blob_proto_free(CaffeTchBlobProto* blob);
}

namespace caffe {

// The standard names Caffe's namespace brings in, which programs that say
// `using namespace caffe;` use unqualified.
using std::fstream;
using std::ios;
using std::isinf;
using std::isnan;
using std::make_pair;
using std::map;
using std::ostringstream;
using std::pair;
using std::set;
using std::shared_ptr;
using std::string;
using std::stringstream;
using std::vector;

enum Phase { TRAIN = 0, TEST = 1 };

namespace internal {
inline void check(bool ok) {
  if (!ok) throw std::runtime_error(caffe_tch_last_error());
}
constexpr int kMaxAxes = 32;
}  // namespace internal

class Caffe {
 public:
  enum Brew { CPU, GPU };
  static void set_mode(Brew mode) {
    internal::check(caffe_tch_set_mode(mode == GPU ? 1 : 0) == 0);
    mode_() = mode;
  }
  static Brew mode() { return mode_(); }
  static void SetDevice(int device_id) { internal::check(caffe_tch_set_device(device_id) == 0); }
  static void set_random_seed(unsigned int seed) { caffe_tch_set_random_seed(seed); }

 private:
  static Brew& mode_() {
    static Brew mode = CPU;
    return mode;
  }
};

// Caffe's start-up for its tools: gflags' command line and glog, where this
// program has them (it then links them, as Caffe's programs do).
inline void GlobalInit(int* pargc, char*** pargv) {
#if defined(GFLAGS_GFLAGS_H_) || defined(GFLAGS_DLL_DECL)
  gflags::ParseCommandLineFlags(pargc, pargv, true);
#endif
  ::google::InitGoogleLogging(*(pargv)[0]);
  (void)pargc;
}

// A mean file's contents (`ReadProtoFromBinaryFile` fills it; `Blob::FromProto` reads it).
class BlobProto {
 public:
  vector<int> shape_;
  vector<float> data_;
  int data_size() const { return static_cast<int>(data_.size()); }
  float data(int i) const { return data_[i]; }
};

inline bool ReadProtoFromBinaryFile(const string& filename, BlobProto* proto) {
  CaffeTchBlobProto* blob = caffe_tch_blob_proto_read(filename.c_str());
  if (blob == nullptr) return false;
  int64_t dims[internal::kMaxAxes];
  int axes = caffe_tch_blob_proto_shape(blob, dims, internal::kMaxAxes);
  size_t count = 1;
  proto->shape_.clear();
  for (int i = 0; i < axes && i < internal::kMaxAxes; ++i) {
    proto->shape_.push_back(static_cast<int>(dims[i]));
    count *= static_cast<size_t>(dims[i]);
  }
  const float* data = caffe_tch_blob_proto_data(blob);
  proto->data_.assign(data, data + count);
  caffe_tch_blob_proto_free(blob);
  return true;
}
inline bool ReadProtoFromBinaryFile(const char* filename, BlobProto* proto) {
  return ReadProtoFromBinaryFile(string(filename), proto);
}
inline void ReadProtoFromBinaryFileOrDie(const string& filename, BlobProto* proto) {
  internal::check(ReadProtoFromBinaryFile(filename, proto));
}
inline void ReadProtoFromBinaryFileOrDie(const char* filename, BlobProto* proto) {
  ReadProtoFromBinaryFileOrDie(string(filename), proto);
}

template <typename Dtype>
class Net;

// A blob: a net's (its values live in the net) or one of the program's own
// (`Blob<float> mean; mean.FromProto(proto);`).
template <typename Dtype>
class Blob {
  static_assert(sizeof(Dtype) == sizeof(float) && Dtype(0.5) == 0.5f, "caffe-tch's nets are float nets");

 public:
  Blob() : net_(nullptr) {}
  Blob(int num, int channels, int height, int width) : net_(nullptr) { Reshape(num, channels, height, width); }
  explicit Blob(const vector<int>& shape) : net_(nullptr) { Reshape(shape); }

  vector<int> shape() const {
    if (net_ == nullptr) return own_shape_;
    int64_t dims[internal::kMaxAxes];
    int axes = layer_ < 0 ? caffe_tch_net_blob_shape(net_, name_.c_str(), dims, internal::kMaxAxes)
                          : caffe_tch_net_layer_blob_shape(net_, layer_, index_, dims, internal::kMaxAxes);
    internal::check(axes >= 0);
    return vector<int>(dims, dims + axes);
  }
  int num_axes() const { return static_cast<int>(shape().size()); }
  int shape(int index) const {
    vector<int> s = shape();
    int axis = index < 0 ? index + static_cast<int>(s.size()) : index;
    if (axis < 0 || axis >= static_cast<int>(s.size())) throw std::out_of_range("Blob::shape: axis out of range");
    return s[axis];
  }
  int count() const { return count(0); }
  // The product of the axes [start_axis, end_axis).
  int count(int start_axis, int end_axis) const {
    vector<int> s = shape();
    int n = 1;
    for (int i = start_axis; i < end_axis && i < static_cast<int>(s.size()); ++i) n *= s[i];
    return n;
  }
  int count(int start_axis) const { return count(start_axis, num_axes()); }
  string shape_string() const {
    std::ostringstream out;
    int n = 1;
    for (int d : shape()) {
      out << d << " ";
      n *= d;
    }
    out << "(" << n << ")";
    return out.str();
  }
  // Caffe's row-major offset of (n, c, h, w) in a blob of up to 4 axes.
  int offset(int n, int c = 0, int h = 0, int w = 0) const {
    return ((n * channels() + c) * height() + h) * width() + w;
  }
  Dtype data_at(int n, int c, int h, int w) const { return cpu_data()[offset(n, c, h, w)]; }
  // Caffe's legacy accessors: axes 0-3, 1 past the last axis.
  int num() const { return legacy(0); }
  int channels() const { return legacy(1); }
  int height() const { return legacy(2); }
  int width() const { return legacy(3); }
  const string& name() const { return name_; }

  void Reshape(int num, int channels, int height, int width) { Reshape(vector<int>{num, channels, height, width}); }
  void Reshape(const vector<int>& shape) {
    if (net_ == nullptr) {
      own_shape_ = shape;
      size_t count = 1;
      for (int d : shape) count *= static_cast<size_t>(d);
      own_data_.resize(count);
      return;
    }
    if (layer_ >= 0) {
      if (shape == this->shape()) return;
      throw std::runtime_error("Blob::Reshape: a layer's blob keeps the shape its layer gave it");
    }
    vector<int64_t> dims(shape.begin(), shape.end());
    internal::check(caffe_tch_net_reshape_input(net_, name_.c_str(), dims.data(), static_cast<int>(dims.size())) == 0);
  }

  const Dtype* cpu_data() const { return data(); }
  Dtype* mutable_cpu_data() { return data(); }

  void FromProto(const BlobProto& proto, bool reshape = true) {
    if (reshape) Reshape(proto.shape_);
    if (static_cast<int>(proto.data_.size()) != count()) {
      throw std::runtime_error("Blob::FromProto: the proto holds " + std::to_string(proto.data_.size()) +
                               " values for a blob of " + std::to_string(count()));
    }
    std::memcpy(mutable_cpu_data(), proto.data_.data(), proto.data_.size() * sizeof(float));
  }

 private:
  friend class Net<Dtype>;
  Blob(CaffeTchNet* net, const string& name) : net_(net), name_(name) {}
  // Blob `index` of layer `layer` (weights, bias, statistics).
  Blob(CaffeTchNet* net, int layer, int index) : net_(net), layer_(layer), index_(index) {}
  Blob(const Blob&) = delete;
  Blob& operator=(const Blob&) = delete;

  int legacy(int axis) const {
    vector<int> s = shape();
    return axis < static_cast<int>(s.size()) ? s[axis] : 1;
  }
  Dtype* data() const {
    if (net_ == nullptr) return const_cast<Dtype*>(reinterpret_cast<const Dtype*>(own_data_.data()));
    float* p = layer_ < 0 ? caffe_tch_net_blob_data(net_, name_.c_str())
                          : caffe_tch_net_layer_blob_data(net_, layer_, index_);
    internal::check(p != nullptr);
    return reinterpret_cast<Dtype*>(p);
  }

  CaffeTchNet* net_;
  string name_;
  int layer_ = -1, index_ = -1;
  vector<int> own_shape_;
  vector<float> own_data_;
};

// A layer of a net: its type and its blobs (weights, bias, statistics), whose
// memory cpu_data()/mutable_cpu_data() reach on a CPU net; not its Forward.
template <typename Dtype>
class Layer {
 public:
  const char* type() const { return type_.c_str(); }
  vector<shared_ptr<Blob<Dtype> > >& blobs() { return blobs_; }
  const vector<shared_ptr<Blob<Dtype> > >& blobs() const { return blobs_; }

 private:
  friend class Net<Dtype>;
  string type_;
  vector<shared_ptr<Blob<Dtype> > > blobs_;
};

template <typename Dtype>
class Net {
 public:
  Net(const string& param_file, Phase phase, const int level = 0, const vector<string>* stages = nullptr) {
    vector<const char*> names;
    if (stages != nullptr)
      for (const string& s : *stages) names.push_back(s.c_str());
    net_ = caffe_tch_net_new(param_file.c_str(), phase, level, names.data(), static_cast<int>(names.size()));
    internal::check(net_ != nullptr);
    // Inputs (0), outputs (1), blobs (2), layers (3), layer types (4), as libcaffe numbers them.
    for (int which = 0; which < 5; ++which) {
      int n = caffe_tch_net_count(net_, which);
      internal::check(n >= 0);
      for (int i = 0; i < n; ++i) {
        const char* name = caffe_tch_net_name(net_, which, i);
        internal::check(name != nullptr);
        if (which == 0) inputs_.push_back(blob_named(name));
        if (which == 1) outputs_.push_back(blob_named(name));
        if (which == 2) blob_names_.push_back(name);
        if (which == 3) layer_names_.push_back(name);
        if (which == 4) {
          shared_ptr<Layer<Dtype> > layer(new Layer<Dtype>());
          layer->type_ = name;
          int blobs = caffe_tch_net_layer_blob_count(net_, i);
          internal::check(blobs >= 0);
          for (int j = 0; j < blobs; ++j) {
            shared_ptr<Blob<Dtype> > blob(new Blob<Dtype>(net_, i, j));
            layer->blobs_.push_back(blob);
            params_.push_back(blob);
          }
          layers_.push_back(layer);
        }
      }
    }
  }
  ~Net() { caffe_tch_net_free(net_); }
  Net(const Net&) = delete;
  Net& operator=(const Net&) = delete;

  void CopyTrainedLayersFrom(const string& trained_filename) {
    internal::check(caffe_tch_net_copy_trained_layers_from(net_, trained_filename.c_str()) == 0);
  }
  void Reshape() { internal::check(caffe_tch_net_reshape(net_) == 0); }
  const vector<Blob<Dtype>*>& Forward(Dtype* loss = nullptr) {
    float value = 0;
    internal::check(caffe_tch_net_forward(net_, &value) == 0);
    if (loss != nullptr) *loss = value;
    return outputs_;
  }

  // Caffe's older name for Forward, with the inputs already written.
  const vector<Blob<Dtype>*>& ForwardPrefilled(Dtype* loss = nullptr) { return Forward(loss); }

  int num_inputs() const { return static_cast<int>(inputs_.size()); }
  int num_outputs() const { return static_cast<int>(outputs_.size()); }
  const vector<Blob<Dtype>*>& input_blobs() const { return inputs_; }
  const vector<Blob<Dtype>*>& output_blobs() const { return outputs_; }
  const vector<string>& blob_names() const { return blob_names_; }
  bool has_blob(const string& name) const {
    return std::find(blob_names_.begin(), blob_names_.end(), name) != blob_names_.end();
  }
  const vector<string>& layer_names() const { return layer_names_; }
  const vector<shared_ptr<Layer<Dtype> > >& layers() const { return layers_; }
  const shared_ptr<Layer<Dtype> > layer_by_name(const string& name) const {
    for (size_t i = 0; i < layer_names_.size(); ++i)
      if (layer_names_[i] == name) return layers_[i];
    return shared_ptr<Layer<Dtype> >();
  }
  // Every layer's blobs, layer by layer (a shared blob once per layer that uses it, as in Caffe).
  const vector<shared_ptr<Blob<Dtype> > >& params() const { return params_; }
  bool has_layer(const string& name) const {
    return std::find(layer_names_.begin(), layer_names_.end(), name) != layer_names_.end();
  }
  // Shares ownership with the net's own record of the blob; valid while the net lives.
  const shared_ptr<Blob<Dtype> > blob_by_name(const string& name) const {
    if (!has_blob(name)) return shared_ptr<Blob<Dtype> >();
    blob_named(name);
    return blobs_[name];
  }

 private:
  // The net's one Blob object for `name`, made on first use.
  Blob<Dtype>* blob_named(const string& name) const {
    auto it = blobs_.find(name);
    if (it != blobs_.end()) return it->second.get();
    shared_ptr<Blob<Dtype> > blob(new Blob<Dtype>(net_, name));
    blobs_[name] = blob;
    return blob.get();
  }

  CaffeTchNet* net_;
  mutable std::map<string, shared_ptr<Blob<Dtype> > > blobs_;
  vector<Blob<Dtype>*> inputs_, outputs_;
  vector<string> blob_names_, layer_names_;
  vector<shared_ptr<Layer<Dtype> > > layers_;
  vector<shared_ptr<Blob<Dtype> > > params_;
};

}  // namespace caffe

#endif  // CAFFE_TCH_CAFFE_HPP_
