// caffe-tch's C++ interface: BVLC Caffe's `caffe/caffe.hpp` as programs use
// it, over libcaffe.so (caffe-tch; link with -lcaffe). A program written
// against Caffe's Net, Blob and Solver (Caffe's examples/cpp_classification,
// most model-zoo demos, training loops) compiles unchanged:
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
//   SolverParameter param;
//   ReadSolverParamsFromTextFileOrDie("solver.prototxt", &param);
//   shared_ptr<Solver<float> > solver(SolverRegistry<float>::CreateSolver(param));
//   solver->Solve();   // or Step(n), Snapshot(), Restore(state), net(), test_nets()
//
// What differs from BVLC Caffe: only float nets; a net's blobs are read and
// written on the host (cpu_data, mutable_cpu_data, cpu_diff,
// mutable_cpu_diff; the gpu_ accessors throw, and a net in GPU mode
// copies its inputs to the device at Forward). A blob that is not a net
// input is a host copy that keeps its address and gets each pass's values
// (a layer's blobs, its weights and their diffs, are the net's own memory
// on a CPU net); what a program writes into such a copy is read where Caffe
// would read the blob: a ForwardFrom past the blob's layer reads its data,
// and a Backward reads the diff of each top no later layer in its range
// reads (an output of a net with force_backward, the top BackwardFrom
// starts at). A Forward keeps what a Backward needs on a TRAIN net with a
// loss or with force_backward, and otherwise runs inference-only (a
// Backward after it runs that forward again first). SolverParameter and
// NetParameter have the fields programs set and read (a setter per field,
// not protobuf's whole interface); Datum and BlobProto have their fields'
// accessors (caffe/internal/records.hpp), and caffe/util/db.hpp its DBs.
// Not here: several solvers in one program. Errors are thrown as std::runtime_error with caffe-tch's
// one-line message (Caffe's CHECKs abort instead).
#ifndef CAFFE_TCH_CAFFE_HPP_
#define CAFFE_TCH_CAFFE_HPP_

// What Caffe's headers bring along, which its programs use without
// including it themselves (std::ifstream, std::cout, std::setprecision, ...).
#include <algorithm>
#include <chrono>
#include <climits>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <functional>
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

#include "caffe/util/rng.hpp"

// As Caffe's, a build with USE_OPENCV brings OpenCV's core (MemoryDataLayer
// takes cv::Mat images).
#ifdef USE_OPENCV
#include <opencv2/core/core.hpp>
#endif

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
// Caffe's header brings Boost's headers along (shared_ptr, lexical_cast,
// which its tools use without including them); where Boost is installed,
// so does this one, and caffe::shared_ptr is Boost's, as in Caffe (whose
// programs spell it boost::shared_ptr too); without Boost it is std's.
// -DCAFFE_TCH_STD_SHARED_PTR keeps std's where Boost is installed.
#if defined(__has_include)
#if __has_include(<boost/lexical_cast.hpp>)
#include <boost/lexical_cast.hpp>
#include <boost/shared_ptr.hpp>
#if !defined(CAFFE_TCH_STD_SHARED_PTR)
#define CAFFE_TCH_BOOST_SHARED_PTR 1
#endif
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

// Caffe's common.hpp macros that its programs use.
#define STRINGIFY(m) #m
#define AS_STRING(m) STRINGIFY(m)
#ifndef CAFFE_VERSION
#define CAFFE_VERSION 1.0.0
#endif
#ifdef CPU_ONLY
#define NO_GPU LOG(FATAL) << "Cannot use GPU in CPU-only Caffe: check mode."
#endif

extern "C" {
struct CaffeTchNet;
struct CaffeTchSolverParam;
struct CaffeTchSolver;
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
float* caffe_tch_net_blob_data(CaffeTchNet* net, const char* name, int diff, int write);
int caffe_tch_net_layer_blob_count(CaffeTchNet* net, int layer);
int caffe_tch_net_layer_blob_shape(CaffeTchNet* net, int layer, int j, int64_t* dims, int max);
float* caffe_tch_net_layer_blob_data(CaffeTchNet* net, int layer, int j, int diff);
int caffe_tch_net_phase(CaffeTchNet* net);
int caffe_tch_net_forward(CaffeTchNet* net, int start, int end, float* loss);
int caffe_tch_net_backward(CaffeTchNet* net, int start, int end);
int caffe_tch_net_clear_param_diffs(CaffeTchNet* net);
int caffe_tch_net_update(CaffeTchNet* net);
int caffe_tch_net_layer_link_count(CaffeTchNet* net, int layer, int tops);
const char* caffe_tch_net_layer_link(CaffeTchNet* net, int layer, int tops, int k);
int caffe_tch_net_layer_propagates(CaffeTchNet* net, int layer, int k);
int caffe_tch_net_blob_loss_weight(CaffeTchNet* net, const char* name, float* weight);
const char* caffe_tch_device_query();
int caffe_tch_solver_param_has(CaffeTchSolverParam* param, const char* name);
int caffe_tch_solver_param_clear(CaffeTchSolverParam* param, const char* name);
int caffe_tch_solver_set_action(CaffeTchSolver* solver, int (*action)(void*), void* context);
CaffeTchSolverParam* caffe_tch_solver_param_new();
CaffeTchSolverParam* caffe_tch_solver_param_read(const char* file);
CaffeTchSolverParam* caffe_tch_solver_param_clone(CaffeTchSolverParam* param);
void caffe_tch_solver_param_free(CaffeTchSolverParam* param);
int caffe_tch_solver_param_merge(CaffeTchSolverParam* param, const char* prototxt);
const char* caffe_tch_solver_param_get(CaffeTchSolverParam* param, const char* name, int index);
int caffe_tch_solver_param_size(CaffeTchSolverParam* param, const char* name);
CaffeTchSolver* caffe_tch_solver_new(CaffeTchSolverParam* param, const char* type);
void caffe_tch_solver_free(CaffeTchSolver* solver);
int caffe_tch_solver_net_count(CaffeTchSolver* solver);
CaffeTchNet* caffe_tch_solver_net(CaffeTchSolver* solver, int i);
int caffe_tch_solver_step(CaffeTchSolver* solver, int iters);
int caffe_tch_solver_solve(CaffeTchSolver* solver, const char* resume_file);
int caffe_tch_solver_restore(CaffeTchSolver* solver, const char* state_file);
int caffe_tch_solver_snapshot(CaffeTchSolver* solver);
int caffe_tch_solver_apply_update(CaffeTchSolver* solver);
int64_t caffe_tch_solver_step_piece(CaffeTchSolver* solver, int piece, int64_t arg);
int64_t caffe_tch_solver_iter(CaffeTchSolver* solver);
CaffeTchSolverParam* caffe_tch_solver_param_of(CaffeTchSolver* solver);
struct CaffeTchNetParam;
CaffeTchNetParam* caffe_tch_net_param_new();
CaffeTchNetParam* caffe_tch_net_param_read(const char* file, int binary);
CaffeTchNetParam* caffe_tch_net_param_clone(CaffeTchNetParam* param);
void caffe_tch_net_param_free(CaffeTchNetParam* param);
int caffe_tch_net_param_write(CaffeTchNetParam* param, const char* file);
int caffe_tch_net_param_merge(CaffeTchNetParam* param, const char* prototxt);
const char* caffe_tch_net_param_get(CaffeTchNetParam* param, const char* name);
int caffe_tch_net_param_size(CaffeTchNetParam* param, const char* name);
CaffeTchNet* caffe_tch_net_new_from_param(CaffeTchNetParam* param);
CaffeTchNetParam* caffe_tch_net_to_proto(CaffeTchNet* net, int write_diff);
int caffe_tch_net_copy_trained_layers_from_param(CaffeTchNet* net, CaffeTchNetParam* param);
struct CaffeTchLayerTable {
  void* (*create)(const char* type, const uint8_t* message, size_t len, const char* const* names, int n_bottom,
                  int n_top);
  void (*destroy)(void* layer);
  int (*set_bottom_shape)(void* layer, int k, const int64_t* dims, int rank);
  int (*setup)(void* layer, int first);
  int (*count)(void* layer, int which);
  int (*shape)(void* layer, int which, int index, int64_t* dims, int max);
  float* (*blob_memory)(void* layer, int which, int index, int diff);
  int (*forward)(void* layer);
  int (*backward)(void* layer, const int* propagate_down, int n);
  const char* (*error)();
  int (*is_loss)(void* layer);
  // Seeds the caffe_rng() of the code that registered the type, as the
  // solver's random_seed (or caffe.set_random_seed) seeds Caffe's.
  void (*seed)(uint64_t seed);
};
// `size` is sizeof(CaffeTchLayerTable) where the caller was compiled, so
// code built against another version of this header is refused, not misread.
int caffe_tch_register_layer_table(const char* type, const CaffeTchLayerTable* table, size_t size);
struct CaffeTchMsg;
CaffeTchMsg* caffe_tch_msg_default(const char* full_name);
CaffeTchMsg* caffe_tch_msg_decode(const char* full_name, const uint8_t* bytes, size_t len);
void caffe_tch_msg_free(CaffeTchMsg* msg);
int caffe_tch_msg_has(const CaffeTchMsg* msg, int number);
int caffe_tch_msg_size(const CaffeTchMsg* msg, int number);
int caffe_tch_msg_int(const CaffeTchMsg* msg, int number, int index, int64_t* out);
int caffe_tch_msg_float(const CaffeTchMsg* msg, int number, int index, double* out);
int64_t caffe_tch_msg_string(const CaffeTchMsg* msg, int number, int index, uint8_t* buf, size_t cap);
CaffeTchMsg* caffe_tch_msg_message(const CaffeTchMsg* msg, int number, int index);
const char* caffe_tch_msg_text(const CaffeTchMsg* msg);
CaffeTchMsg* caffe_tch_net_layer_message(CaffeTchNet* net, int layer);
CaffeTchMsg* caffe_tch_net_param_message(CaffeTchNetParam* param);
int caffe_tch_net_memory_data_reset(CaffeTchNet* net, int layer, const float* data, const float* labels, int n);
int caffe_tch_net_memory_data_add_datums(CaffeTchNet* net, int layer, const uint8_t* const* records,
                                         const size_t* lens, int n);
int caffe_tch_net_memory_data_set_batch_size(CaffeTchNet* net, int layer, int n);
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
#ifdef CAFFE_TCH_BOOST_SHARED_PTR
using boost::shared_ptr;
#else
using std::shared_ptr;
#endif
using std::string;
using std::stringstream;
using std::vector;

enum Phase { TRAIN = 0, TEST = 1 };

namespace internal {
struct CustomLayers;
inline void check(bool ok) {
  if (!ok) throw std::runtime_error(caffe_tch_last_error());
}
constexpr int kMaxAxes = 32;

// A string as prototxt writes it.
inline std::string quoted(const std::string& value) {
  std::string out = "\"";
  for (char c : value) {
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  return out + "\"";
}

// `mutable_state()` / `mutable_train_state()` of a message: NetState's
// setters, each merged into the message that owns it as prototxt text.
template <typename Owner>
class NetStateSetter {
 public:
  NetStateSetter(Owner* owner, const char* field) : owner_(owner), field_(field) {}
  void set_phase(int phase) { merge(phase == 0 ? "phase: TRAIN" : "phase: TEST"); }
  void set_level(int level) { merge("level: " + std::to_string(level)); }
  void add_stage(const std::string& stage) { merge("stage: " + quoted(stage)); }

 private:
  void merge(const std::string& text) { owner_->merge(std::string(field_) + " { " + text + " }"); }
  Owner* owner_;
  const char* field_;
};
}  // namespace internal

// Caffe's timers (tools and benchmarks time passes with them), on the host clock.
class Timer {
 public:
  Timer() : running_(false), has_run_(false) {}
  virtual ~Timer() {}
  virtual void Start() {
    start_ = std::chrono::steady_clock::now();
    running_ = true;
    has_run_ = true;
  }
  virtual void Stop() {
    if (running_) stop_ = std::chrono::steady_clock::now();
    running_ = false;
  }
  virtual float MicroSeconds() {
    if (running_) Stop();
    return std::chrono::duration<float, std::micro>(stop_ - start_).count();
  }
  virtual float MilliSeconds() { return MicroSeconds() / 1000.0f; }
  virtual float Seconds() { return MicroSeconds() / 1e6f; }
  bool initialized() { return true; }
  bool running() { return running_; }
  bool has_run_at_least_once() { return has_run_; }

 private:
  bool running_, has_run_;
  std::chrono::steady_clock::time_point start_, stop_;
};
class CPUTimer : public Timer {};

class Caffe {
 public:
  enum Brew { CPU, GPU };
  static void set_mode(Brew mode) {
    internal::check(caffe_tch_set_mode(mode == GPU ? 1 : 0) == 0);
    mode_() = mode;
  }
  static Brew mode() { return mode_(); }
  static void SetDevice(int device_id) { internal::check(caffe_tch_set_device(device_id) == 0); }
  // Seeds libtorch's generators (fillers, dropout) and this thread's
  // caffe_rng() (caffe/util/rng.hpp), as Caffe seeds its own.
  static void set_random_seed(unsigned int seed) {
    caffe_tch_set_random_seed(seed);
    caffe_rng()->seed(seed);
  }
  // What `caffe device_query` reports, as log lines.
  static void DeviceQuery() {
    std::istringstream report(caffe_tch_device_query());
    for (std::string line; std::getline(report, line);) LOG(INFO) << line;
  }
  // Recorded only: a solver in a C++ program trains on one device (`caffe
  // train -gpu 0,1` runs several).
  static void set_solver_count(int count) { solver_count_() = count; }
  static int solver_count() { return solver_count_(); }
  static bool root_solver() { return true; }

 private:
  static Brew& mode_() {
    static Brew mode = CPU;
    return mode;
  }
  static int& solver_count_() {
    static int count = 1;
    return count;
  }
};

// What a solver's action function asks between iterations (a signal handler's answer).
namespace SolverAction {
enum Enum { NONE = 0, STOP = 1, SNAPSHOT = 2 };
}
typedef std::function<SolverAction::Enum()> ActionCallback;

// Caffe's start-up for its tools: gflags' command line and glog, where this
// program has them (it then links them, as Caffe's programs do).
inline void GlobalInit(int* pargc, char*** pargv) {
#if defined(GFLAGS_GFLAGS_H_) || defined(GFLAGS_DLL_DECL)
  gflags::ParseCommandLineFlags(pargc, pargv, true);
#endif
  ::google::InitGoogleLogging(*(pargv)[0]);
  (void)pargc;
}

}  // namespace caffe

// BlobShape, BlobProto and Datum, and io.hpp's functions on them.
#include "caffe/internal/records.hpp"

namespace caffe {
namespace internal {
typedef std::shared_ptr<CaffeTchMsg> MessageHandle;
inline MessageHandle own_message(CaffeTchMsg* msg) {
  check(msg != nullptr);
  return MessageHandle(msg, caffe_tch_msg_free);
}

// A read-only protobuf message of the schema, read field by field through
// libcaffe (cpp/src/message_view.rs); the generated classes in
// caffe/proto/messages.hpp give each field protobuf's accessor names.
class MessageView {
 public:
  explicit MessageView(const char* full_name) : handle_(own_message(caffe_tch_msg_default(full_name))) {}
  explicit MessageView(MessageHandle handle) : handle_(handle) {}
  // The message as prototxt, as protobuf's DebugString prints it.
  std::string DebugString() const {
    const char* text = caffe_tch_msg_text(handle_.get());
    check(text != nullptr);
    return text;
  }

 protected:
  bool has(int number) const {
    int set = caffe_tch_msg_has(handle_.get(), number);
    check(set >= 0);
    return set == 1;
  }
  int size_of(int number) const {
    int n = caffe_tch_msg_size(handle_.get(), number);
    check(n >= 0);
    return n;
  }
  int64_t int_at(int number, int index) const {
    int64_t value = 0;
    check(caffe_tch_msg_int(handle_.get(), number, index, &value) == 0);
    return value;
  }
  double float_at(int number, int index) const {
    double value = 0;
    check(caffe_tch_msg_float(handle_.get(), number, index, &value) == 0);
    return value;
  }
  const std::string& string_at(int number, int index) const {
    std::pair<int, int> key(number, index);
    auto it = cache_.find(key);
    if (it != cache_.end()) return *static_cast<const std::string*>(it->second.get());
    int64_t n = caffe_tch_msg_string(handle_.get(), number, index, nullptr, 0);
    check(n >= 0);
    std::shared_ptr<std::string> value(new std::string(static_cast<size_t>(n), '\0'));
    if (n > 0)
      check(caffe_tch_msg_string(handle_.get(), number, index, reinterpret_cast<uint8_t*>(&(*value)[0]),
                                 static_cast<size_t>(n)) == n);
    cache_[key] = value;
    return *value;
  }
  template <typename T>
  const T& message_at(int number, int index) const {
    std::pair<int, int> key(number, index);
    auto it = cache_.find(key);
    if (it != cache_.end()) return *static_cast<const T*>(it->second.get());
    std::shared_ptr<T> value(new T(own_message(caffe_tch_msg_message(handle_.get(), number, index))));
    cache_[key] = value;
    return *value;
  }
  const BlobShape& shape_at(int number, int index) const {
    std::pair<int, int> key(number, index);
    auto it = cache_.find(key);
    if (it != cache_.end()) return *static_cast<const BlobShape*>(it->second.get());
    MessageHandle shape = own_message(caffe_tch_msg_message(handle_.get(), number, index));
    std::shared_ptr<BlobShape> value(new BlobShape);
    int n = caffe_tch_msg_size(shape.get(), 1);
    check(n >= 0);
    for (int i = 0; i < n; ++i) {
      int64_t dim = 0;
      check(caffe_tch_msg_int(shape.get(), 1, i, &dim) == 0);
      value->add_dim(dim);
    }
    cache_[key] = value;
    return *value;
  }

  MessageHandle handle_;

 private:
  mutable std::map<std::pair<int, int>, std::shared_ptr<void> > cache_;
};
}  // namespace internal
}  // namespace caffe

// protobuf's accessors for the other messages (ConvolutionParameter, ...).
#include "caffe/proto/messages.hpp"

namespace caffe {
namespace internal {
// A NetParameter's layers, read through the message view.
class NetParameterView : public MessageView {
 public:
  explicit NetParameterView(MessageHandle handle) : MessageView(handle) {}
  const LayerParameter& layer(int index) const { return message_at<LayerParameter>(100, index); }
};
}  // namespace internal

// A net's definition, or a trained net's definition and weights (what a
// .caffemodel holds): read, written, and built into a Net. The fields here
// are those programs set and read.
class NetParameter {
 public:
  NetParameter() : p_(caffe_tch_net_param_new()), state_(this, "state") {}
  NetParameter(const NetParameter& other) : p_(caffe_tch_net_param_clone(other.p_)), state_(this, "state") {
    internal::check(p_ != nullptr);
  }
  NetParameter& operator=(const NetParameter& other) {
    if (this != &other) reset(caffe_tch_net_param_clone(other.p_));
    return *this;
  }
  ~NetParameter() { caffe_tch_net_param_free(p_); }

  std::string name() const { return get("name"); }
  void set_name(const std::string& name) { merge("name: " + internal::quoted(name)); }
  bool force_backward() const { return get("force_backward") == "true"; }
  void set_force_backward(bool on) { merge(on ? "force_backward: true" : "force_backward: false"); }
  int layer_size() const { return size("layer"); }
  // Layer `index`, read through protobuf's accessors (valid until this message changes).
  const LayerParameter& layer(int index) const {
    if (index < 0 || index >= layer_size())
      throw std::out_of_range("NetParameter::layer: no layer " + std::to_string(index) + " of " +
                              std::to_string(layer_size()));
    if (!view_) view_.reset(new internal::NetParameterView(internal::own_message(caffe_tch_net_param_message(p_))));
    return view_->layer(index);
  }
  // The phase, level and stages a Net built from it takes (`mutable_state()->set_phase(TEST)`).
  typedef internal::NetStateSetter<NetParameter> NetState;
  NetState* mutable_state() { return &state_; }
  // prototxt text merged in as protobuf's TextFormat::MergeFromString does.
  void MergeFromString(const std::string& prototxt) { merge(prototxt); }

 private:
  template <typename Dtype>
  friend class Net;
  friend class internal::NetStateSetter<NetParameter>;
  friend bool ReadProtoFromTextFile(const std::string& filename, NetParameter* param);
  friend bool ReadProtoFromBinaryFile(const std::string& filename, NetParameter* param);
  friend bool WriteProtoToBinaryFile(const NetParameter& param, const std::string& filename);

  void reset(CaffeTchNetParam* p) {
    internal::check(p != nullptr);
    caffe_tch_net_param_free(p_);
    p_ = p;
    view_.reset();
  }
  void merge(const std::string& prototxt) {
    internal::check(caffe_tch_net_param_merge(p_, prototxt.c_str()) == 0);
    view_.reset();
  }
  std::string get(const char* name) const {
    const char* value = caffe_tch_net_param_get(p_, name);
    internal::check(value != nullptr);
    return value;
  }
  int size(const char* name) const {
    int n = caffe_tch_net_param_size(p_, name);
    internal::check(n >= 0);
    return n;
  }

  CaffeTchNetParam* p_;
  NetState state_;
  // The message's read view, made on first use of layer(i).
  mutable std::shared_ptr<internal::NetParameterView> view_;
};

// Net files read as Caffe reads them (legacy formats upgraded); false, or
// an exception for the OrDie forms, with the one-line error otherwise.
inline bool ReadProtoFromTextFile(const std::string& filename, NetParameter* param) {
  CaffeTchNetParam* read = caffe_tch_net_param_read(filename.c_str(), 0);
  if (read == nullptr) return false;
  param->reset(read);
  return true;
}
inline bool ReadProtoFromBinaryFile(const std::string& filename, NetParameter* param) {
  CaffeTchNetParam* read = caffe_tch_net_param_read(filename.c_str(), 1);
  if (read == nullptr) return false;
  param->reset(read);
  return true;
}
inline void ReadProtoFromTextFileOrDie(const std::string& filename, NetParameter* param) {
  internal::check(ReadProtoFromTextFile(filename, param));
}
inline void ReadProtoFromBinaryFileOrDie(const std::string& filename, NetParameter* param) {
  internal::check(ReadProtoFromBinaryFile(filename, param));
}
inline void ReadNetParamsFromTextFileOrDie(const std::string& filename, NetParameter* param) {
  ReadProtoFromTextFileOrDie(filename, param);
}
inline void ReadNetParamsFromBinaryFileOrDie(const std::string& filename, NetParameter* param) {
  ReadProtoFromBinaryFileOrDie(filename, param);
}
// Written whole or not at all (a .caffemodel from Net::ToProto).
inline bool WriteProtoToBinaryFile(const NetParameter& param, const std::string& filename) {
  return caffe_tch_net_param_write(param.p_, filename.c_str()) == 0;
}
inline bool WriteProtoToBinaryFile(const NetParameter& param, const char* filename) {
  return WriteProtoToBinaryFile(param, std::string(filename));
}

template <typename Dtype>
class Net;
template <typename Dtype>
class Layer;
template <typename Dtype>
class Solver;

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
  Dtype diff_at(int n, int c, int h, int w) const { return cpu_diff()[offset(n, c, h, w)]; }
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

  void ReshapeLike(const Blob& other) { Reshape(other.shape()); }
  // A negative axis counts from the end, as in Caffe.
  int CanonicalAxisIndex(int axis_index) const {
    int axes = num_axes();
    if (axis_index < -axes || axis_index >= axes)
      throw std::out_of_range("Blob::CanonicalAxisIndex: axis " + std::to_string(axis_index) + " of a " +
                              std::to_string(axes) + "-axis blob");
    return axis_index < 0 ? axis_index + axes : axis_index;
  }

  const Dtype* cpu_data() const { return data(false, false); }
  Dtype* mutable_cpu_data() { return data(false, true); }
  const Dtype* cpu_diff() const { return data(true, false); }
  Dtype* mutable_cpu_diff() { return data(true, true); }
  // Device memory is not handed out: a GPU net's blobs are read and written
  // through the cpu_ accessors (host copies). These throw, as Caffe's CPU
  // build aborts on them, so that a program choosing by Caffe::mode() compiles.
  const Dtype* gpu_data() const { return no_device_pointer("gpu_data"); }
  Dtype* mutable_gpu_data() { return no_device_pointer("mutable_gpu_data"); }
  const Dtype* gpu_diff() const { return no_device_pointer("gpu_diff"); }
  Dtype* mutable_gpu_diff() { return no_device_pointer("mutable_gpu_diff"); }
  // The sums of absolute values and of squares, of the data or the diff.
  Dtype asum_data() const { return sum(cpu_data(), false); }
  Dtype asum_diff() const { return sum(cpu_diff(), false); }
  Dtype sumsq_data() const { return sum(cpu_data(), true); }
  Dtype sumsq_diff() const { return sum(cpu_diff(), true); }

  // The source's data (or diff) into this blob's, reshaping it to the
  // source's shape when `reshape` (else the shapes must match).
  void CopyFrom(const Blob& source, bool copy_diff = false, bool reshape = false) {
    if (source.count() != count() || source.shape() != shape()) {
      if (!reshape) throw std::runtime_error("Blob::CopyFrom: the blobs' shapes differ (pass reshape = true)");
      Reshape(source.shape());
    }
    const Dtype* from = copy_diff ? source.cpu_diff() : source.cpu_data();
    Dtype* to = copy_diff ? mutable_cpu_diff() : mutable_cpu_data();
    std::memcpy(to, from, static_cast<size_t>(count()) * sizeof(Dtype));
  }

  // The proto's values (and diffs, if it has them) into this blob, reshaped
  // to its shape when `reshape` (else the counts must agree).
  void FromProto(const BlobProto& proto, bool reshape = true) {
    if (reshape) Reshape(proto.blob_shape());
    if (proto.data_size() != count() || (proto.diff_size() > 0 && proto.diff_size() != count())) {
      throw std::runtime_error("Blob::FromProto: the proto holds " + std::to_string(proto.data_size()) +
                               " values for a blob of " + std::to_string(count()));
    }
    Dtype* data = mutable_cpu_data();
    for (int i = 0; i < proto.data_size(); ++i) data[i] = proto.data(i);
    if (proto.diff_size() > 0) {
      Dtype* diff = mutable_cpu_diff();
      for (int i = 0; i < proto.diff_size(); ++i) diff[i] = proto.diff(i);
    }
  }
  // This blob's shape and values (and diffs, with `write_diff`) into `proto`.
  void ToProto(BlobProto* proto, bool write_diff = false) const {
    proto->clear_shape();
    BlobShape* shape = proto->mutable_shape();
    for (int d : this->shape()) shape->add_dim(d);
    proto->clear_data();
    proto->clear_diff();
    const Dtype* data = cpu_data();
    for (int i = 0, n = count(); i < n; ++i) proto->add_data(data[i]);
    if (write_diff) {
      const Dtype* diff = cpu_diff();
      for (int i = 0, n = count(); i < n; ++i) proto->add_diff(diff[i]);
    }
  }

 private:
  friend class Net<Dtype>;
  friend class Layer<Dtype>;
  friend struct internal::CustomLayers;
  Blob(CaffeTchNet* net, const string& name) : net_(net), name_(name) {}
  bool is(CaffeTchNet* net, const string& name) const { return net_ == net && layer_ < 0 && name_ == name; }
  // Blob `index` of layer `layer` (weights, bias, statistics).
  Blob(CaffeTchNet* net, int layer, int index) : net_(net), layer_(layer), index_(index) {}
  Blob(const Blob&) = delete;
  Blob& operator=(const Blob&) = delete;

  Dtype* no_device_pointer(const char* what) const {
    throw std::runtime_error(string("Blob::") + what +
                             ": caffe-tch hands out no device memory; use the cpu_ accessors (on a GPU net they are "
                             "host copies, read and written where Caffe reads the blob)");
  }
  int legacy(int axis) const {
    vector<int> s = shape();
    return axis < static_cast<int>(s.size()) ? s[axis] : 1;
  }
  Dtype* data(bool diff, bool write) const {
    if (net_ == nullptr) {
      vector<float>& v = diff ? own_diff_ : own_data_;
      v.resize(own_data_.size());
      return reinterpret_cast<Dtype*>(v.data());
    }
    float* p = layer_ < 0 ? caffe_tch_net_blob_data(net_, name_.c_str(), diff, write)
                          : caffe_tch_net_layer_blob_data(net_, layer_, index_, diff);
    internal::check(p != nullptr);
    return reinterpret_cast<Dtype*>(p);
  }
  Dtype sum(const Dtype* p, bool squares) const {
    double total = 0;
    for (int i = 0, n = count(); i < n; ++i) total += squares ? double(p[i]) * p[i] : std::fabs(double(p[i]));
    return static_cast<Dtype>(total);
  }

  CaffeTchNet* net_;
  string name_;
  int layer_ = -1, index_ = -1;
  vector<int> own_shape_;
  mutable vector<float> own_data_, own_diff_;
};

// A layer. Net::layers() gives a net's own: its parameter, its blobs
// (weights, bias, statistics), whose memory cpu_data()/mutable_cpu_data()
// reach on a CPU net, and its Forward and Backward, which run on its net's
// blobs (the vectors net->bottom_vecs()[i] and top_vecs()[i], as Caffe's
// tools pass them). A class of the program's own derives from it as in
// Caffe (LayerSetUp, Reshape, Forward_cpu, Backward_cpu; NeuronLayer and
// LossLayer below), and REGISTER_LAYER_CLASS makes its type known to every
// net the program builds afterwards (see internal::CustomLayers).
template <typename Dtype>
class Layer {
 public:
  explicit Layer(const LayerParameter& param) : layer_param_(param), phase_(param.phase()) {}
  virtual ~Layer() {}

  // Caffe's set-up: the blob counts checked, then LayerSetUp and Reshape.
  void SetUp(const vector<Blob<Dtype>*>& bottom, const vector<Blob<Dtype>*>& top) {
    CheckBlobCounts(bottom, top);
    LayerSetUp(bottom, top);
    Reshape(bottom, top);
  }
  virtual void LayerSetUp(const vector<Blob<Dtype>*>& bottom, const vector<Blob<Dtype>*>& top) {
    (void)bottom;
    (void)top;
  }
  virtual void Reshape(const vector<Blob<Dtype>*>& bottom, const vector<Blob<Dtype>*>& top) = 0;

  // A net's layer: the layer alone, reshaped to its bottoms; its loss. A
  // program's own: Reshape and Forward_cpu on the blobs given, and the sum
  // of its tops weighted by loss(i).
  Dtype Forward(const vector<Blob<Dtype>*>& bottom, const vector<Blob<Dtype>*>& top) {
    if (net_ != nullptr) {
      check_own(bottom, top);
      float loss = 0;
      internal::check(caffe_tch_net_forward(net_, index_, index_, &loss) == 0);
      return loss;
    }
    Reshape(bottom, top);
    Forward_cpu(bottom, top);
    Dtype loss = 0;
    for (size_t i = 0; i < top.size() && i < loss_.size(); ++i) {
      if (loss_[i] == 0) continue;
      const Dtype* data = top[i]->cpu_data();
      for (int k = 0, n = top[i]->count(); k < n; ++k) loss += loss_[i] * data[k];
    }
    return loss;
  }
  // A net's layer: from its tops' diffs (or its loss) to its bottoms' and
  // its blobs' diffs, `propagate_down` being the net's own
  // (bottom_need_backward). A program's own: Backward_cpu.
  void Backward(const vector<Blob<Dtype>*>& top, const vector<bool>& propagate_down,
                const vector<Blob<Dtype>*>& bottom) {
    if (net_ != nullptr) {
      check_own(bottom, top);
      internal::check(caffe_tch_net_backward(net_, index_, index_) == 0);
      return;
    }
    Backward_cpu(top, propagate_down, bottom);
  }

  virtual const char* type() const { return layer_param_.type().c_str(); }
  const LayerParameter& layer_param() const { return layer_param_; }
  vector<shared_ptr<Blob<Dtype> > >& blobs() { return blobs_; }
  const vector<shared_ptr<Blob<Dtype> > >& blobs() const { return blobs_; }
  Dtype loss(int top_index) const { return top_index < static_cast<int>(loss_.size()) ? loss_[top_index] : Dtype(0); }
  void set_loss(int top_index, Dtype value) {
    if (top_index >= static_cast<int>(loss_.size())) loss_.resize(top_index + 1, Dtype(0));
    loss_[top_index] = value;
  }
  bool param_propagate_down(int param_id) const {
    return param_id < static_cast<int>(param_propagate_down_.size()) ? param_propagate_down_[param_id] : false;
  }
  void set_param_propagate_down(int param_id, bool value) {
    if (param_id >= static_cast<int>(param_propagate_down_.size())) param_propagate_down_.resize(param_id + 1, true);
    param_propagate_down_[param_id] = value;
  }
  // The blob counts the layer takes (-1: any), checked by SetUp.
  virtual int ExactNumBottomBlobs() const { return -1; }
  virtual int MinBottomBlobs() const { return -1; }
  virtual int MaxBottomBlobs() const { return -1; }
  virtual int ExactNumTopBlobs() const { return -1; }
  virtual int MinTopBlobs() const { return -1; }
  virtual int MaxTopBlobs() const { return -1; }
  virtual bool EqualNumBottomTopBlobs() const { return false; }
  virtual bool AutoTopBlobs() const { return false; }
  virtual bool AllowForceBackward(const int bottom_index) const {
    (void)bottom_index;
    return true;
  }

 protected:
  Layer() {}
  virtual void Forward_cpu(const vector<Blob<Dtype>*>& bottom, const vector<Blob<Dtype>*>& top) = 0;
  // caffe-tch's nets run a program's layer on the CPU (its blobs are host
  // memory, copied to and from a GPU net), so these are the CPU ones.
  virtual void Forward_gpu(const vector<Blob<Dtype>*>& bottom, const vector<Blob<Dtype>*>& top) {
    Forward_cpu(bottom, top);
  }
  virtual void Backward_cpu(const vector<Blob<Dtype>*>& top, const vector<bool>& propagate_down,
                            const vector<Blob<Dtype>*>& bottom) = 0;
  virtual void Backward_gpu(const vector<Blob<Dtype>*>& top, const vector<bool>& propagate_down,
                            const vector<Blob<Dtype>*>& bottom) {
    Backward_cpu(top, propagate_down, bottom);
  }
  virtual void CheckBlobCounts(const vector<Blob<Dtype>*>& bottom, const vector<Blob<Dtype>*>& top) {
    int nb = static_cast<int>(bottom.size()), nt = static_cast<int>(top.size());
    string at = layer_param_.name() + " (" + type() + ")";
    auto fail = [&](const string& what) { throw std::runtime_error("layer " + at + ": " + what); };
    if (ExactNumBottomBlobs() >= 0 && nb != ExactNumBottomBlobs())
      fail("takes " + std::to_string(ExactNumBottomBlobs()) + " bottom blob(s) as input, got " + std::to_string(nb));
    if (MinBottomBlobs() >= 0 && nb < MinBottomBlobs())
      fail("takes at least " + std::to_string(MinBottomBlobs()) + " bottom blob(s) as input");
    if (MaxBottomBlobs() >= 0 && nb > MaxBottomBlobs())
      fail("takes at most " + std::to_string(MaxBottomBlobs()) + " bottom blob(s) as input");
    if (ExactNumTopBlobs() >= 0 && nt != ExactNumTopBlobs())
      fail("produces " + std::to_string(ExactNumTopBlobs()) + " top blob(s) as output, got " + std::to_string(nt));
    if (MinTopBlobs() >= 0 && nt < MinTopBlobs())
      fail("produces at least " + std::to_string(MinTopBlobs()) + " top blob(s) as output");
    if (MaxTopBlobs() >= 0 && nt > MaxTopBlobs())
      fail("produces at most " + std::to_string(MaxTopBlobs()) + " top blob(s) as output");
    if (EqualNumBottomTopBlobs() && nb != nt) fail("produces one top blob as output for each bottom blob input");
  }

  LayerParameter layer_param_;
  Phase phase_ = TRAIN;
  vector<shared_ptr<Blob<Dtype> > > blobs_;
  vector<bool> param_propagate_down_;
  vector<Dtype> loss_;

 private:
  friend class Net<Dtype>;
  friend struct internal::CustomLayers;
  template <typename>
  friend class MemoryDataLayer;
  void check_own(const vector<Blob<Dtype>*>& bottom, const vector<Blob<Dtype>*>& top) const {
    bool own = static_cast<int>(bottom.size()) == layer_param_.bottom_size() &&
               static_cast<int>(top.size()) == layer_param_.top_size();
    for (int k = 0; own && k < layer_param_.bottom_size(); ++k) own = bottom[k]->is(net_, layer_param_.bottom(k));
    for (int k = 0; own && k < layer_param_.top_size(); ++k) own = top[k]->is(net_, layer_param_.top(k));
    if (!own)
      throw std::runtime_error("Layer '" + layer_param_.name() +
                               "': Forward and Backward run on its net's own blobs (net->bottom_vecs()[i], "
                               "net->top_vecs()[i])");
  }
  CaffeTchNet* net_ = nullptr;
  int index_ = -1;
};

// A layer with one bottom and one top of its shape (an activation), as Caffe's NeuronLayer.
template <typename Dtype>
class NeuronLayer : public Layer<Dtype> {
 public:
  explicit NeuronLayer(const LayerParameter& param) : Layer<Dtype>(param) {}
  void Reshape(const vector<Blob<Dtype>*>& bottom, const vector<Blob<Dtype>*>& top) override {
    top[0]->ReshapeLike(*bottom[0]);
  }
  int ExactNumBottomBlobs() const override { return 1; }
  int ExactNumTopBlobs() const override { return 1; }
};

// A loss: a scalar top, weighted 1 unless the prototxt gives a loss_weight,
// as Caffe's LossLayer; its Backward_cpu scales by top[0]->cpu_diff()[0].
template <typename Dtype>
class LossLayer : public Layer<Dtype> {
 public:
  explicit LossLayer(const LayerParameter& param) : Layer<Dtype>(param) {}
  void Reshape(const vector<Blob<Dtype>*>& bottom, const vector<Blob<Dtype>*>& top) override {
    if (bottom[0]->shape(0) != bottom[1]->shape(0))
      throw std::runtime_error("layer " + this->layer_param_.name() +
                               ": the data and label should have the same first dimension");
    top[0]->Reshape(vector<int>());
  }
  int ExactNumBottomBlobs() const override { return 2; }
  int ExactNumTopBlobs() const override { return 1; }
  bool AutoTopBlobs() const override { return true; }
  bool AllowForceBackward(const int bottom_index) const override { return bottom_index != 1; }
};

namespace internal {
// A net's own layer, as Net::layers() gives it (its Forward and Backward are
// the net's over that one layer; these are never called).
template <typename Dtype>
class NetLayer : public Layer<Dtype> {
 public:
  explicit NetLayer(MessageHandle param) : Layer<Dtype>(LayerParameter(param)) {}
  void Reshape(const vector<Blob<Dtype>*>&, const vector<Blob<Dtype>*>&) override {}

 protected:
  void Forward_cpu(const vector<Blob<Dtype>*>&, const vector<Blob<Dtype>*>&) override {}
  void Backward_cpu(const vector<Blob<Dtype>*>&, const vector<bool>&, const vector<Blob<Dtype>*>&) override {}
};

// The program's own layer types (REGISTER_LAYER_CLASS): each type's creator,
// and the functions libcaffe calls to build and run one in a net. A net
// gives each such layer its own Blob objects (a top named like a bottom is
// that bottom, in place, as in Caffe); libcaffe copies the net's values in
// and the results out around each call. A C++ exception from the layer
// becomes the net's error, naming the layer.
struct CustomLayers {
  typedef shared_ptr<Layer<float> > (*Creator)(const LayerParameter&);
  static std::map<string, Creator>& creators() {
    static std::map<string, Creator> registered;
    return registered;
  }
  struct Instance {
    shared_ptr<Layer<float> > layer;
    vector<shared_ptr<Blob<float> > > owned;
    vector<Blob<float>*> bottom, top;
  };
  static string& last_error() {
    static thread_local string message;
    return message;
  }
  template <typename F>
  static int guard(F f) {
    try {
      f();
      return 0;
    } catch (const std::exception& e) {
      last_error() = e.what();
    } catch (...) {
      last_error() = "an exception that is not a std::exception";
    }
    return -1;
  }
  static Instance* of(void* layer) { return static_cast<Instance*>(layer); }
  static Blob<float>* blob(void* layer, int which, int index) {
    Instance* in = of(layer);
    if (which == 0 && index >= 0 && index < static_cast<int>(in->bottom.size())) return in->bottom[index];
    if (which == 1 && index >= 0 && index < static_cast<int>(in->top.size())) return in->top[index];
    if (which == 2 && index >= 0 && index < static_cast<int>(in->layer->blobs().size()))
      return in->layer->blobs()[index].get();
    throw std::out_of_range("no blob " + std::to_string(index) + " of kind " + std::to_string(which));
  }

  static void* create(const char* type, const uint8_t* message, size_t len, const char* const* names, int n_bottom,
                      int n_top) {
    Instance* made = nullptr;
    guard([&] {
      auto it = creators().find(type);
      if (it == creators().end()) throw std::runtime_error(string("no creator registered for ") + type);
      LayerParameter param(own_message(caffe_tch_msg_decode("caffe.LayerParameter", message, len)));
      vector<string> bottoms(names, names + n_bottom), tops(names + n_bottom, names + n_bottom + n_top);
      std::unique_ptr<Instance> instance(new Instance);
      instance->layer = it->second(param);
      if (!instance->layer) throw std::runtime_error(string("the creator of ") + type + " returned no layer");
      for (int k = 0; k < n_bottom; ++k) {
        instance->owned.push_back(shared_ptr<Blob<float> >(new Blob<float>()));
        instance->bottom.push_back(instance->owned.back().get());
      }
      for (int k = 0; k < n_top; ++k) {
        Blob<float>* same = nullptr;
        for (int b = 0; b < n_bottom; ++b)
          if (tops[k] == bottoms[b]) same = instance->bottom[b];
        if (same == nullptr) {
          instance->owned.push_back(shared_ptr<Blob<float> >(new Blob<float>()));
          same = instance->owned.back().get();
        }
        instance->top.push_back(same);
      }
      made = instance.release();
    });
    return made;
  }
  static void destroy(void* layer) { delete of(layer); }
  static int set_bottom_shape(void* layer, int k, const int64_t* dims, int rank) {
    return guard([&] { blob(layer, 0, k)->Reshape(vector<int>(dims, dims + rank)); });
  }
  static int setup(void* layer, int first) {
    return guard([&] {
      Instance* in = of(layer);
      if (first)
        in->layer->SetUp(in->bottom, in->top);
      else
        in->layer->Reshape(in->bottom, in->top);
    });
  }
  static int count(void* layer, int which) {
    Instance* in = of(layer);
    size_t n = which == 0 ? in->bottom.size() : which == 1 ? in->top.size() : in->layer->blobs().size();
    return static_cast<int>(n);
  }
  static int shape(void* layer, int which, int index, int64_t* dims, int max) {
    int rank = -1;
    guard([&] {
      Blob<float>* b = blob(layer, which, index);
      if (b == nullptr) throw std::runtime_error("a null blob");
      vector<int> s = b->shape();
      for (int k = 0; k < static_cast<int>(s.size()) && k < max; ++k) dims[k] = s[k];
      rank = static_cast<int>(s.size());
    });
    return rank;
  }
  static float* blob_memory(void* layer, int which, int index, int diff) {
    float* p = nullptr;
    guard([&] {
      Blob<float>* b = blob(layer, which, index);
      if (b == nullptr) throw std::runtime_error("a null blob");
      if (b->net_ != nullptr) throw std::runtime_error("a blob of a net, not the layer's own");
      if (b->own_data_.size() != static_cast<size_t>(b->count()))
        throw std::runtime_error("blob " + std::to_string(index) + " was never shaped (Reshape it in Reshape or LayerSetUp)");
      p = diff ? b->mutable_cpu_diff() : b->mutable_cpu_data();
    });
    return p;
  }
  static int forward(void* layer) {
    return guard([&] {
      Instance* in = of(layer);
      in->layer->Reshape(in->bottom, in->top);
      in->layer->Forward_cpu(in->bottom, in->top);
    });
  }
  static int backward(void* layer, const int* propagate_down, int n) {
    return guard([&] {
      Instance* in = of(layer);
      vector<bool> flags(propagate_down, propagate_down + n);
      in->layer->Backward_cpu(in->top, flags, in->bottom);
    });
  }
  static int is_loss(void* layer) { return dynamic_cast<LossLayer<float>*>(of(layer)->layer.get()) != nullptr; }
  static const char* error() { return last_error().c_str(); }
  static void seed(uint64_t value) { caffe_rng()->seed(static_cast<unsigned int>(value)); }
  static const CaffeTchLayerTable* table() {
    static const CaffeTchLayerTable functions = {create,  destroy,  set_bottom_shape, setup, count, shape,
                                                 blob_memory, forward, backward, error, is_loss, seed};
    return &functions;
  }
};
}  // namespace internal

// Caffe's MemoryDataLayer, as Net::layers() gives a net's MemoryData layer:
// a program casts to it (dynamic_pointer_cast) and feeds it before Forward.
// Its forwards serve the items batch by batch, cycling, as Caffe's do.
template <typename Dtype>
class MemoryDataLayer : public internal::NetLayer<Dtype> {
 public:
  explicit MemoryDataLayer(internal::MessageHandle param) : internal::NetLayer<Dtype>(param) {}
  const char* type() const override { return "MemoryData"; }
  // `n` items (a multiple of the batch size) and their labels, as they are,
  // read in place as Caffe reads them: the arrays must outlive their use
  // (until the next Reset, AddDatumVector or the net's end), and a value
  // written into them later is what the next forwards serve.
  void Reset(Dtype* data, Dtype* labels, int n) {
    internal::check(caffe_tch_net_memory_data_reset(this->net_, this->index_, data, labels, n) == 0);
  }
  // Datums (raw or encoded) through the layer's transform_param, as Caffe's
  // DataTransformer does, with their labels.
  void AddDatumVector(const vector<Datum>& datum_vector) {
    vector<string> records(datum_vector.size());
    vector<const uint8_t*> pointers;
    vector<size_t> lens;
    for (size_t i = 0; i < datum_vector.size(); ++i) {
      if (!datum_vector[i].SerializeToString(&records[i])) throw std::runtime_error(caffe_tch_last_error());
      pointers.push_back(reinterpret_cast<const uint8_t*>(records[i].data()));
      lens.push_back(records[i].size());
    }
    internal::check(caffe_tch_net_memory_data_add_datums(this->net_, this->index_, pointers.data(), lens.data(),
                                                         static_cast<int>(records.size())) == 0);
  }
#ifdef USE_OPENCV
  // 8-bit images (as OpenCV holds them: rows of interleaved channels, BGR)
  // and their labels, through the layer's transform_param as AddDatumVector.
  void AddMatVector(const vector<cv::Mat>& mat_vector, const vector<int>& labels) {
    if (mat_vector.size() != labels.size())
      throw std::runtime_error("AddMatVector: vector of Mat and vector of labels should be of equal size");
    vector<Datum> datums(mat_vector.size());
    for (size_t i = 0; i < mat_vector.size(); ++i) {
      const cv::Mat& image = mat_vector[i];
      if (image.depth() != CV_8U) throw std::runtime_error("AddMatVector: image data type must be unsigned byte");
      int channels = image.channels(), rows = image.rows, cols = image.cols;
      string pixels(static_cast<size_t>(channels) * rows * cols, '\0');
      for (int h = 0; h < rows; ++h) {
        const unsigned char* row = image.ptr<unsigned char>(h);
        for (int w = 0; w < cols; ++w)
          for (int c = 0; c < channels; ++c) pixels[(static_cast<size_t>(c) * rows + h) * cols + w] = row[w * channels + c];
      }
      datums[i].set_channels(channels);
      datums[i].set_height(rows);
      datums[i].set_width(cols);
      datums[i].set_data(pixels);
      datums[i].set_label(labels[i]);
    }
    AddDatumVector(datums);
  }
#endif
  // Later forwards take `new_size` items (from the first item again), and the
  // net's blobs after the layer take that batch; items held that it does not
  // divide are let go, to be given again (Reset, AddDatumVector).
  void set_batch_size(int new_size) {
    internal::check(caffe_tch_net_memory_data_set_batch_size(this->net_, this->index_, new_size) == 0);
    batch_size_ = new_size;
  }
  int batch_size() const {
    return batch_size_ > 0 ? batch_size_ : static_cast<int>(this->layer_param_.memory_data_param().batch_size());
  }
  int channels() const { return static_cast<int>(this->layer_param_.memory_data_param().channels()); }
  int height() const { return static_cast<int>(this->layer_param_.memory_data_param().height()); }
  int width() const { return static_cast<int>(this->layer_param_.memory_data_param().width()); }

 private:
  int batch_size_ = 0;
};

// Caffe's layer registry, for the program's own types: AddCreator makes a
// type known to libcaffe (a type registered twice, or one of caffe-tch's
// own, is an error, as in Caffe).
template <typename Dtype>
class LayerRegistry {
 public:
  typedef shared_ptr<Layer<Dtype> > (*Creator)(const LayerParameter&);
  static void AddCreator(const string& type, Creator creator) {
    internal::check(caffe_tch_register_layer_table(type.c_str(), internal::CustomLayers::table(),
                                                   sizeof(CaffeTchLayerTable)) == 0);
    internal::CustomLayers::creators()[type] = creator;
  }
  // The program's own types.
  static vector<string> LayerTypeList() {
    vector<string> types;
    for (const auto& entry : internal::CustomLayers::creators()) types.push_back(entry.first);
    return types;
  }
};

template <typename Dtype>
class LayerRegisterer {
 public:
  LayerRegisterer(const string& type, shared_ptr<Layer<Dtype> > (*creator)(const LayerParameter&)) {
    LayerRegistry<Dtype>::AddCreator(type, creator);
  }
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
    Init();
  }
  // The net `param` defines, in the phase, level and stages of its state.
  explicit Net(const NetParameter& param) : net_(caffe_tch_net_new_from_param(param.p_)) {
    internal::check(net_ != nullptr);
    Init();
  }
  ~Net() { caffe_tch_net_free(net_); }
  Net(const Net&) = delete;
  Net& operator=(const Net&) = delete;

  void CopyTrainedLayersFrom(const string& trained_filename) {
    internal::check(caffe_tch_net_copy_trained_layers_from(net_, trained_filename.c_str()) == 0);
  }
  void CopyTrainedLayersFrom(const NetParameter& param) {
    internal::check(caffe_tch_net_copy_trained_layers_from_param(net_, param.p_) == 0);
  }
  // The definition and weights (and diffs), as a snapshot's .caffemodel holds them.
  void ToProto(NetParameter* param, bool write_diff = false) const {
    param->reset(caffe_tch_net_to_proto(net_, write_diff ? 1 : 0));
  }
  void Reshape() { internal::check(caffe_tch_net_reshape(net_) == 0); }
  const vector<Blob<Dtype>*>& Forward(Dtype* loss = nullptr) {
    Dtype value = ForwardFromTo(0, -1);
    if (loss != nullptr) *loss = value;
    return outputs_;
  }
  // Caffe's older name for Forward, with the inputs already written.
  const vector<Blob<Dtype>*>& ForwardPrefilled(Dtype* loss = nullptr) { return Forward(loss); }
  // Layers start..end (end -1: the last), each taking its bottoms' current
  // shapes; the loss of those layers.
  Dtype ForwardFromTo(int start, int end) {
    float loss = 0;
    internal::check(caffe_tch_net_forward(net_, start, end, &loss) == 0);
    return loss;
  }
  Dtype ForwardFrom(int start) { return ForwardFromTo(start, -1); }
  Dtype ForwardTo(int end) { return ForwardFromTo(0, end); }
  // Param diffs accumulate (ClearParamDiffs zeroes them); blob diffs are this backward's.
  void Backward() { BackwardFromTo(-1, 0); }
  void BackwardFromTo(int start, int end) { internal::check(caffe_tch_net_backward(net_, start, end) == 0); }
  void BackwardFrom(int start) { BackwardFromTo(start, 0); }
  void BackwardTo(int end) { BackwardFromTo(-1, end); }
  Dtype ForwardBackward() {
    Dtype loss;
    Forward(&loss);
    Backward();
    return loss;
  }
  void ClearParamDiffs() { internal::check(caffe_tch_net_clear_param_diffs(net_) == 0); }
  // Every learnable blob's data minus its diff (a hand-written update rule scales the diffs first).
  void Update() { internal::check(caffe_tch_net_update(net_) == 0); }
  Phase phase() const {
    int phase = caffe_tch_net_phase(net_);
    internal::check(phase >= 0);
    return phase == 0 ? TRAIN : TEST;
  }

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
  const string& name() const { return name_; }
  // Every blob in blob_names() order, and the tables Caffe's tools index by it.
  const vector<shared_ptr<Blob<Dtype> > >& blobs() const { return blob_list_; }
  const vector<int>& input_blob_indices() const { return input_indices_; }
  const vector<int>& output_blob_indices() const { return output_indices_; }
  const vector<Dtype>& blob_loss_weights() const { return blob_loss_weights_; }
  // Per layer: the blobs it reads and writes, and whether its backward reaches each bottom.
  const vector<vector<Blob<Dtype>*> >& bottom_vecs() const { return bottom_vecs_; }
  const vector<vector<Blob<Dtype>*> >& top_vecs() const { return top_vecs_; }
  const vector<vector<bool> >& bottom_need_backward() const { return bottom_need_backward_; }
  // Shares ownership with the net's own record of the blob; valid while the net lives.
  const shared_ptr<Blob<Dtype> > blob_by_name(const string& name) const {
    if (!has_blob(name)) return shared_ptr<Blob<Dtype> >();
    blob_named(name);
    return blobs_[name];
  }

 private:
  friend class Solver<Dtype>;
  // One of a solver's nets (libcaffe's handle keeps the solver's nets alive).
  explicit Net(CaffeTchNet* net) : net_(net) {
    internal::check(net_ != nullptr);
    Init();
  }
  void Init() {
    // Inputs (0), outputs (1), blobs (2), layers (3), layer types (4), the
    // net's name (5), as libcaffe numbers them.
    for (int which = 0; which < 6; ++which) {
      int n = caffe_tch_net_count(net_, which);
      internal::check(n >= 0);
      for (int i = 0; i < n; ++i) {
        const char* name = caffe_tch_net_name(net_, which, i);
        internal::check(name != nullptr);
        if (which == 0) inputs_.push_back(blob_named(name));
        if (which == 1) outputs_.push_back(blob_named(name));
        if (which == 2) blob_names_.push_back(name);
        if (which == 3) layer_names_.push_back(name);
        if (which == 5) name_ = name;
        if (which == 4) {
          internal::MessageHandle definition = internal::own_message(caffe_tch_net_layer_message(net_, i));
          shared_ptr<Layer<Dtype> > layer(string(name) == "MemoryData"
                                              ? static_cast<Layer<Dtype>*>(new MemoryDataLayer<Dtype>(definition))
                                              : new internal::NetLayer<Dtype>(definition));
          layer->net_ = net_;
          layer->index_ = i;
          vector<Blob<Dtype>*> links[2];
          for (int tops = 0; tops < 2; ++tops) {
            int count = caffe_tch_net_layer_link_count(net_, i, tops);
            internal::check(count >= 0);
            for (int k = 0; k < count; ++k) {
              const char* link = caffe_tch_net_layer_link(net_, i, tops, k);
              internal::check(link != nullptr);
              links[tops].push_back(blob_named(link));
            }
          }
          vector<bool> need(links[0].size());
          for (size_t k = 0; k < need.size(); ++k) {
            int propagates = caffe_tch_net_layer_propagates(net_, i, static_cast<int>(k));
            internal::check(propagates >= 0);
            need[k] = propagates == 1;
          }
          bottom_vecs_.push_back(links[0]);
          top_vecs_.push_back(links[1]);
          bottom_need_backward_.push_back(need);
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
    for (size_t b = 0; b < blob_names_.size(); ++b) {
      const string& name = blob_names_[b];
      blob_list_.push_back(blob_by_name(name));
      float weight = 0;
      internal::check(caffe_tch_net_blob_loss_weight(net_, name.c_str(), &weight) == 0);
      blob_loss_weights_.push_back(weight);
      for (Blob<Dtype>* in : inputs_)
        if (in->name() == name) input_indices_.push_back(static_cast<int>(b));
      for (Blob<Dtype>* out : outputs_)
        if (out->name() == name) output_indices_.push_back(static_cast<int>(b));
    }
  }

  // The net's one Blob object for `name`, made on first use.
  Blob<Dtype>* blob_named(const string& name) const {
    auto it = blobs_.find(name);
    if (it != blobs_.end()) return it->second.get();
    shared_ptr<Blob<Dtype> > blob(new Blob<Dtype>(net_, name));
    blobs_[name] = blob;
    return blob.get();
  }

  CaffeTchNet* net_;
  string name_;
  mutable std::map<string, shared_ptr<Blob<Dtype> > > blobs_;
  vector<shared_ptr<Blob<Dtype> > > blob_list_;
  vector<int> input_indices_, output_indices_;
  vector<Dtype> blob_loss_weights_;
  vector<vector<Blob<Dtype>*> > bottom_vecs_, top_vecs_;
  vector<vector<bool> > bottom_need_backward_;
  vector<Blob<Dtype>*> inputs_, outputs_;
  vector<string> blob_names_, layer_names_;
  vector<shared_ptr<Layer<Dtype> > > layers_;
  vector<shared_ptr<Blob<Dtype> > > params_;
};

// A solver's parameters: read from a prototxt (ReadSolverParamsFromTextFileOrDie)
// and set field by field as protobuf's accessors set them. The fields here
// are those programs set and read; a setter for a repeated field adds.
class SolverParameter {
 public:
  enum SolverMode { CPU = 0, GPU = 1 };
  static const SolverMode SolverMode_CPU = CPU, SolverMode_GPU = GPU;

  SolverParameter() : p_(caffe_tch_solver_param_new()), train_state_(this, "train_state") {}
  SolverParameter(const SolverParameter& other)
      : p_(caffe_tch_solver_param_clone(other.p_)), train_state_(this, "train_state") {
    internal::check(p_ != nullptr);
  }
  SolverParameter& operator=(const SolverParameter& other) {
    if (this != &other) {
      CaffeTchSolverParam* copy = caffe_tch_solver_param_clone(other.p_);
      internal::check(copy != nullptr);
      caffe_tch_solver_param_free(p_);
      p_ = copy;
    }
    return *this;
  }
  ~SolverParameter() { caffe_tch_solver_param_free(p_); }

#define CAFFE_TCH_PRESENCE(name)                          \
  bool has_##name() const { return has(#name); }          \
  void clear_##name() { clear(#name); }
#define CAFFE_TCH_NUMBER_FIELD(type, name)                                   \
  CAFFE_TCH_PRESENCE(name)                                                  \
  type name() const { return static_cast<type>(std::stod(get(#name))); }    \
  void set_##name(type value) {                                             \
    std::ostringstream text;                                                \
    text << std::setprecision(17) << #name ": " << value;                    \
    merge(text.str());                                                      \
  }
#define CAFFE_TCH_INTEGER_FIELD(type, name)                                  \
  CAFFE_TCH_PRESENCE(name)                                                  \
  type name() const { return static_cast<type>(std::stoll(get(#name))); }   \
  void set_##name(type value) { merge(string(#name ": ") + std::to_string(value)); }
#define CAFFE_TCH_BOOL_FIELD(name)                                           \
  CAFFE_TCH_PRESENCE(name)                                                  \
  bool name() const { return get(#name) == "true"; }                        \
  void set_##name(bool value) { merge(string(#name ": ") + (value ? "true" : "false")); }
#define CAFFE_TCH_STRING_FIELD(name)                                         \
  CAFFE_TCH_PRESENCE(name)                                                  \
  string name() const { return get(#name); }                                \
  void set_##name(const string& value) { merge(string(#name ": ") + quoted(value)); }
  CAFFE_TCH_STRING_FIELD(net)
  CAFFE_TCH_STRING_FIELD(train_net)
  CAFFE_TCH_STRING_FIELD(type)
  CAFFE_TCH_STRING_FIELD(lr_policy)
  CAFFE_TCH_STRING_FIELD(regularization_type)
  CAFFE_TCH_STRING_FIELD(snapshot_prefix)
  CAFFE_TCH_NUMBER_FIELD(float, base_lr)
  CAFFE_TCH_NUMBER_FIELD(float, gamma)
  CAFFE_TCH_NUMBER_FIELD(float, power)
  CAFFE_TCH_NUMBER_FIELD(float, momentum)
  CAFFE_TCH_NUMBER_FIELD(float, momentum2)
  CAFFE_TCH_NUMBER_FIELD(float, weight_decay)
  CAFFE_TCH_NUMBER_FIELD(float, clip_gradients)
  CAFFE_TCH_NUMBER_FIELD(float, delta)
  CAFFE_TCH_NUMBER_FIELD(float, rms_decay)
  CAFFE_TCH_INTEGER_FIELD(int, max_iter)
  CAFFE_TCH_INTEGER_FIELD(int, display)
  CAFFE_TCH_INTEGER_FIELD(int, average_loss)
  CAFFE_TCH_INTEGER_FIELD(int, iter_size)
  CAFFE_TCH_INTEGER_FIELD(int, stepsize)
  CAFFE_TCH_INTEGER_FIELD(int, snapshot)
  CAFFE_TCH_INTEGER_FIELD(int, test_interval)
  CAFFE_TCH_INTEGER_FIELD(int, device_id)
  CAFFE_TCH_INTEGER_FIELD(int64_t, random_seed)
  CAFFE_TCH_BOOL_FIELD(test_initialization)
  CAFFE_TCH_BOOL_FIELD(snapshot_after_train)
  CAFFE_TCH_BOOL_FIELD(snapshot_diff)
  CAFFE_TCH_BOOL_FIELD(debug_info)
#undef CAFFE_TCH_NUMBER_FIELD
#undef CAFFE_TCH_INTEGER_FIELD
#undef CAFFE_TCH_BOOL_FIELD
#undef CAFFE_TCH_STRING_FIELD
#undef CAFFE_TCH_PRESENCE

  int test_iter_size() const { return size("test_iter"); }
  int test_iter(int index) const { return std::stoi(get("test_iter", index)); }
  void add_test_iter(int value) { merge("test_iter: " + std::to_string(value)); }
  int stepvalue_size() const { return size("stepvalue"); }
  int stepvalue(int index) const { return std::stoi(get("stepvalue", index)); }
  void add_stepvalue(int value) { merge("stepvalue: " + std::to_string(value)); }
  int weights_size() const { return size("weights"); }
  string weights(int index) const { return get("weights", index); }
  void add_weights(const string& file) { merge("weights: " + quoted(file)); }
  void clear_weights() { clear("weights"); }
  void clear_test_iter() { clear("test_iter"); }
  bool has_solver_mode() const { return has("solver_mode"); }
  SolverMode solver_mode() const { return get("solver_mode") == "0" ? CPU : GPU; }
  void set_solver_mode(SolverMode mode) { merge(mode == CPU ? "solver_mode: CPU" : "solver_mode: GPU"); }

  // train_state's level and stages (`mutable_train_state()->set_level(1)`).
  typedef internal::NetStateSetter<SolverParameter> NetState;
  NetState* mutable_train_state() { return &train_state_; }

  // prototxt text merged in as protobuf's TextFormat::MergeFromString does.
  void MergeFromString(const string& prototxt) { merge(prototxt); }

 private:
  template <typename Dtype>
  friend class Solver;
  friend class internal::NetStateSetter<SolverParameter>;
  friend bool ReadProtoFromTextFile(const string& filename, SolverParameter* param);

  static string quoted(const string& value) { return internal::quoted(value); }
  void merge(const string& prototxt) { internal::check(caffe_tch_solver_param_merge(p_, prototxt.c_str()) == 0); }
  string get(const char* name, int index = -1) const {
    const char* value = caffe_tch_solver_param_get(p_, name, index);
    internal::check(value != nullptr);
    return value;
  }
  int size(const char* name) const {
    int n = caffe_tch_solver_param_size(p_, name);
    internal::check(n >= 0);
    return n;
  }
  bool has(const char* name) const {
    int set = caffe_tch_solver_param_has(p_, name);
    internal::check(set >= 0);
    return set == 1;
  }
  void clear(const char* name) { internal::check(caffe_tch_solver_param_clear(p_, name) == 0); }

  CaffeTchSolverParam* p_;
  NetState train_state_;
};
typedef SolverParameter::SolverMode SolverParameter_SolverMode;
const SolverParameter::SolverMode SolverParameter_SolverMode_CPU = SolverParameter::CPU;
const SolverParameter::SolverMode SolverParameter_SolverMode_GPU = SolverParameter::GPU;

// The solver prototxt, read and upgraded as `caffe train` reads it
// (snapshot_prefix defaults to the file's path without its extension).
inline bool ReadProtoFromTextFile(const string& filename, SolverParameter* param) {
  CaffeTchSolverParam* read = caffe_tch_solver_param_read(filename.c_str());
  if (read == nullptr) return false;
  caffe_tch_solver_param_free(param->p_);
  param->p_ = read;
  return true;
}
inline bool ReadProtoFromTextFile(const char* filename, SolverParameter* param) {
  return ReadProtoFromTextFile(string(filename), param);
}
inline void ReadProtoFromTextFileOrDie(const string& filename, SolverParameter* param) {
  internal::check(ReadProtoFromTextFile(filename, param));
}
inline void ReadSolverParamsFromTextFileOrDie(const string& filename, SolverParameter* param) {
  ReadProtoFromTextFileOrDie(filename, param);
}

// A solver: caffe-tch's, with `caffe train`'s training, logs and snapshots.
// Its nets (net(), test_nets()) are built on the device Caffe::set_mode chose.
template <typename Dtype>
class Solver {
 public:
  explicit Solver(const SolverParameter& param) { Init(param, nullptr); }
  Solver(const Solver&) = delete;
  Solver& operator=(const Solver&) = delete;
  virtual ~Solver() {
    // The nets' handles keep what they need of the solver alive.
    test_nets_.clear();
    net_.reset();
    caffe_tch_solver_free(s_);
  }

  // Caffe's solver callbacks: each one added is called at the start of every
  // iteration (after its test pass) and once its gradients are computed,
  // before the update; it may read and write the nets' blobs and diffs.
  class Callback {
   public:
    virtual ~Callback() {}

   protected:
    virtual void on_start() = 0;
    virtual void on_gradients_ready() = 0;
    template <typename T>
    friend class Solver;
  };
  const vector<Callback*>& callbacks() const { return callbacks_; }
  void add_callback(Callback* value) { callbacks_.push_back(value); }

  // Trains to max_iter, first restoring `resume_file`'s state when given.
  void Solve(const char* resume_file = nullptr) {
    if (callbacks_.empty()) {
      internal::check(caffe_tch_solver_solve(s_, resume_file) == 0);
      return;
    }
    if (resume_file != nullptr) Restore(resume_file);
    int64_t start = piece(kSolveBegin);
    Step(param_.max_iter() - iter());
    piece(kSolveEnd, start);
  }
  void Solve(const string& resume_file) { Solve(resume_file.c_str()); }
  void Step(int iters) {
    if (callbacks_.empty()) {
      internal::check(caffe_tch_solver_step(s_, iters) == 0);
      return;
    }
    piece(kStepBegin, iters);
    try {
      while (piece(kStepNext) == 1) {
        for (Callback* c : callbacks_) c->on_start();
        piece(kStepGradients);
        for (Callback* c : callbacks_) c->on_gradients_ready();
        piece(kStepUpdate);
      }
    } catch (...) {
      caffe_tch_solver_step_piece(s_, kStepEnd, 0);
      throw;
    }
    piece(kStepEnd);
  }
  void Restore(const char* resume_file) { internal::check(caffe_tch_solver_restore(s_, resume_file) == 0); }
  void Snapshot() { internal::check(caffe_tch_solver_snapshot(s_) == 0); }
  // Asked between iterations what to do (caffe.cpp hands it its SignalHandler's).
  void SetActionFunction(ActionCallback func) {
    action_ = func;
    internal::check(caffe_tch_solver_set_action(s_, &Solver::ask, this) == 0);
  }
  // The update rule on the diffs the training net holds, at this iteration's rate.
  void ApplyUpdate() { internal::check(caffe_tch_solver_apply_update(s_) == 0); }
  int iter() const {
    int64_t iter = caffe_tch_solver_iter(s_);
    internal::check(iter >= 0);
    return static_cast<int>(iter);
  }
  const SolverParameter& param() const { return param_; }
  virtual const char* type() const { return type_.c_str(); }
  const shared_ptr<Net<Dtype> >& net() const { return net_; }
  const vector<shared_ptr<Net<Dtype> > >& test_nets() const { return test_nets_; }

 protected:
  Solver(const SolverParameter& param, const char* type) { Init(param, type); }

 private:
  // The pieces of a Step between which the callbacks run (cpp/src/solver.rs).
  enum Piece { kStepBegin, kStepNext, kStepGradients, kStepUpdate, kStepEnd, kSolveBegin, kSolveEnd };
  int64_t piece(Piece which, int64_t arg = 0) {
    int64_t out = caffe_tch_solver_step_piece(s_, which, arg);
    internal::check(out >= 0);
    return out;
  }
  void Init(const SolverParameter& param, const char* type) {
    s_ = caffe_tch_solver_new(param.p_, type);
    internal::check(s_ != nullptr);
    CaffeTchSolverParam* ran = caffe_tch_solver_param_of(s_);
    internal::check(ran != nullptr);
    caffe_tch_solver_param_free(param_.p_);
    param_.p_ = ran;
    type_ = param_.type();
    int nets = caffe_tch_solver_net_count(s_);
    internal::check(nets >= 1);
    net_.reset(new Net<Dtype>(caffe_tch_solver_net(s_, 0)));
    for (int i = 1; i < nets; ++i) test_nets_.push_back(shared_ptr<Net<Dtype> >(new Net<Dtype>(caffe_tch_solver_net(s_, i))));
  }

  static int ask(void* self) {
    Solver* solver = static_cast<Solver*>(self);
    return solver->action_ ? static_cast<int>(solver->action_()) : 0;
  }

  CaffeTchSolver* s_;
  vector<Callback*> callbacks_;
  ActionCallback action_;
  SolverParameter param_;
  string type_;
  shared_ptr<Net<Dtype> > net_;
  vector<shared_ptr<Net<Dtype> > > test_nets_;
};

// Caffe's solver classes by rule: each runs the parameters with its type.
#define CAFFE_TCH_SOLVER_CLASS(name, type_name)                                           \
  template <typename Dtype>                                                               \
  class name : public Solver<Dtype> {                                                     \
   public:                                                                                \
    explicit name(const SolverParameter& param) : Solver<Dtype>(param, type_name) {}     \
  };
CAFFE_TCH_SOLVER_CLASS(SGDSolver, "SGD")
CAFFE_TCH_SOLVER_CLASS(NesterovSolver, "Nesterov")
CAFFE_TCH_SOLVER_CLASS(AdaGradSolver, "AdaGrad")
CAFFE_TCH_SOLVER_CLASS(RMSPropSolver, "RMSProp")
CAFFE_TCH_SOLVER_CLASS(AdaDeltaSolver, "AdaDelta")
CAFFE_TCH_SOLVER_CLASS(AdamSolver, "Adam")
#undef CAFFE_TCH_SOLVER_CLASS

// The solver the parameters' `type` names (Caffe's registry; an unknown
// type is an error listing the known ones).
// Caffe's registration macros for a program's own layer type (float nets only).
#define REGISTER_LAYER_CREATOR(type, creator) \
  static ::caffe::LayerRegisterer<float> g_creator_f_##type(#type, creator<float>)
#define REGISTER_LAYER_CLASS(type)                                                        \
  template <typename Dtype>                                                               \
  ::caffe::shared_ptr< ::caffe::Layer<Dtype> > Creator_##type##Layer(                     \
      const ::caffe::LayerParameter& param) {                                             \
    return ::caffe::shared_ptr< ::caffe::Layer<Dtype> >(new type##Layer<Dtype>(param));   \
  }                                                                                       \
  REGISTER_LAYER_CREATOR(type, Creator_##type##Layer)
#define INSTANTIATE_CLASS(classname)  \
  char gInstantiationGuard##classname; \
  template class classname<float>
// A layer's GPU functions where it declares them: caffe-tch runs a program's
// layer on the CPU and never calls these.
#define STUB_GPU(classname)                                                                                  \
  template <typename Dtype>                                                                                  \
  void classname<Dtype>::Forward_gpu(const ::std::vector< ::caffe::Blob<Dtype>*>& bottom,                  \
                                     const ::std::vector< ::caffe::Blob<Dtype>*>& top) {                   \
    this->Forward_cpu(bottom, top);                                                                          \
  }                                                                                                          \
  template <typename Dtype>                                                                                  \
  void classname<Dtype>::Backward_gpu(const ::std::vector< ::caffe::Blob<Dtype>*>& top,                    \
                                      const ::std::vector<bool>& propagate_down,                             \
                                      const ::std::vector< ::caffe::Blob<Dtype>*>& bottom) {                 \
    this->Backward_cpu(top, propagate_down, bottom);                                                         \
  }

template <typename Dtype>
class SolverRegistry {
 public:
  static Solver<Dtype>* CreateSolver(const SolverParameter& param) { return new Solver<Dtype>(param); }
};

}  // namespace caffe

#endif  // CAFFE_TCH_CAFFE_HPP_
