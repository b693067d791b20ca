// caffe-tch's C++ interface: Caffe's record messages, BlobShape, BlobProto
// (mean files, a blob's values) and Datum (a dataset's record), with the
// functions of caffe/util/io.hpp on them. Included by caffe/caffe.hpp; the
// fields live here, and libcaffe.so serializes, parses, decodes and writes
// them as caffe-tch's own tools do. Each message has the accessors
// protobuf generates for its fields (has_, set_, clear_, add_ and the
// repeated fields' _size and indexed forms), not protobuf's reflection.
#ifndef CAFFE_TCH_INTERNAL_RECORDS_HPP_
#define CAFFE_TCH_INTERNAL_RECORDS_HPP_

#include <cstddef>
#include <cstdint>
#include <iostream>
#include <stdexcept>
#include <string>
#include <vector>

extern "C" {
struct CaffeTchBlobProto;
struct CaffeTchDatum;
// A Datum's fields as the header holds them (see cpp/src/datum.rs).
struct CaffeTchDatumFields {
  uint32_t has;
  int32_t channels, height, width, label;
  int encoded;
  const char* data;
  size_t data_len;
  const float* float_data;
  size_t float_len;
};
const char* caffe_tch_last_error();
CaffeTchBlobProto* caffe_tch_blob_proto_read(const char* file);
int caffe_tch_blob_proto_fields(const CaffeTchBlobProto* blob, int32_t* legacy, int64_t* dims, int max, int* axes);
const float* caffe_tch_blob_proto_values(const CaffeTchBlobProto* blob, int diff, size_t* len);
void caffe_tch_blob_proto_free(CaffeTchBlobProto* blob);
int caffe_tch_blob_proto_write(const char* file, uint32_t has, const int32_t* legacy, const int64_t* dims, int axes,
                               const float* data, size_t n_data, const float* diff, size_t n_diff);
ptrdiff_t caffe_tch_datum_serialize(const CaffeTchDatumFields* fields, char* out, size_t cap);
CaffeTchDatum* caffe_tch_datum_parse(const char* bytes, size_t len);
int caffe_tch_datum_fields(const CaffeTchDatum* datum, CaffeTchDatumFields* out);
void caffe_tch_datum_free(CaffeTchDatum* datum);
CaffeTchDatum* caffe_tch_datum_decode_image(const char* bytes, size_t len, int color);
CaffeTchDatum* caffe_tch_datum_read_image(const char* path, int label, int height, int width, int is_color,
                                          const char* encoding);
CaffeTchDatum* caffe_tch_datum_read_file(const char* path, int label);
}

namespace caffe {

// A blob's shape (BlobProto's `shape`).
class BlobShape {
 public:
  int dim_size() const { return static_cast<int>(dim_.size()); }
  int64_t dim(int i) const { return dim_.at(i); }
  void set_dim(int i, int64_t value) { dim_.at(i) = value; }
  void add_dim(int64_t value) { dim_.push_back(value); }
  void clear_dim() { dim_.clear(); }

 private:
  std::vector<int64_t> dim_;
};

// A blob's values as Caffe stores them: a mean file, a layer's weights.
// The legacy num/channels/height/width fields, or `shape`, give its shape.
class BlobProto {
 public:
  int num() const { return legacy_[0]; }
  int channels() const { return legacy_[1]; }
  int height() const { return legacy_[2]; }
  int width() const { return legacy_[3]; }
  void set_num(int value) { set_legacy(0, value); }
  void set_channels(int value) { set_legacy(1, value); }
  void set_height(int value) { set_legacy(2, value); }
  void set_width(int value) { set_legacy(3, value); }
  bool has_num() const { return has_ & 1u; }
  bool has_channels() const { return has_ & 2u; }
  bool has_height() const { return has_ & 4u; }
  bool has_width() const { return has_ & 8u; }
  bool has_shape() const { return has_ & kHasShape; }
  const BlobShape& shape() const { return shape_; }
  BlobShape* mutable_shape() {
    has_ |= kHasShape;
    return &shape_;
  }
  void clear_shape() {
    has_ &= ~kHasShape;
    shape_.clear_dim();
  }

  int data_size() const { return static_cast<int>(data_.size()); }
  float data(int i) const { return data_.at(i); }
  void set_data(int i, float value) { data_.at(i) = value; }
  void add_data(float value) { data_.push_back(value); }
  void clear_data() { data_.clear(); }
  int diff_size() const { return static_cast<int>(diff_.size()); }
  float diff(int i) const { return diff_.at(i); }
  void set_diff(int i, float value) { diff_.at(i) = value; }
  void add_diff(float value) { diff_.push_back(value); }
  void clear_diff() { diff_.clear(); }
  void Clear() { *this = BlobProto(); }

  // The shape Caffe's Blob::FromProto takes: the legacy fields when any is
  // set (4 axes), else `shape`.
  std::vector<int> blob_shape() const {
    if (has_ & 15u) return std::vector<int>(legacy_, legacy_ + 4);
    std::vector<int> shape;
    for (int i = 0; i < shape_.dim_size(); ++i) shape.push_back(static_cast<int>(shape_.dim(i)));
    return shape;
  }

 private:
  friend bool ReadProtoFromBinaryFile(const std::string& filename, BlobProto* proto);
  friend bool WriteProtoToBinaryFile(const BlobProto& proto, const std::string& filename);
  static constexpr uint32_t kHasShape = 16u;
  void set_legacy(int k, int value) {
    legacy_[k] = value;
    has_ |= 1u << k;
  }

  uint32_t has_ = 0;
  int32_t legacy_[4] = {0, 0, 0, 0};
  BlobShape shape_;
  std::vector<float> data_, diff_;
};

// A file of one BlobProto (a mean file) read as Caffe reads it (double and
// NVIDIA Caffe's half-precision values as floats); false, with the one-line
// error as caffe_tch_last_error(), if it cannot be.
inline bool ReadProtoFromBinaryFile(const std::string& filename, BlobProto* proto) {
  CaffeTchBlobProto* blob = caffe_tch_blob_proto_read(filename.c_str());
  if (blob == nullptr) return false;
  BlobProto read;
  int64_t dims[32];
  int axes = 0;
  int has = caffe_tch_blob_proto_fields(blob, read.legacy_, dims, 32, &axes);
  read.has_ = has < 0 ? 0u : static_cast<uint32_t>(has);
  for (int i = 0; i < axes && i < 32; ++i) read.shape_.add_dim(dims[i]);
  size_t n = 0;
  const float* values = caffe_tch_blob_proto_values(blob, 0, &n);
  read.data_.assign(values, values + n);
  values = caffe_tch_blob_proto_values(blob, 1, &n);
  read.diff_.assign(values, values + n);
  caffe_tch_blob_proto_free(blob);
  *proto = read;
  return true;
}
inline bool ReadProtoFromBinaryFile(const char* filename, BlobProto* proto) {
  return ReadProtoFromBinaryFile(std::string(filename), proto);
}
inline void ReadProtoFromBinaryFileOrDie(const std::string& filename, BlobProto* proto) {
  if (!ReadProtoFromBinaryFile(filename, proto)) throw std::runtime_error(caffe_tch_last_error());
}
inline void ReadProtoFromBinaryFileOrDie(const char* filename, BlobProto* proto) {
  ReadProtoFromBinaryFileOrDie(std::string(filename), proto);
}
// Written whole or not at all, in protobuf's encoding (as Caffe's
// compute_image_mean writes a mean file).
inline bool WriteProtoToBinaryFile(const BlobProto& proto, const std::string& filename) {
  std::vector<int64_t> dims;
  for (int i = 0; i < proto.shape_.dim_size(); ++i) dims.push_back(proto.shape_.dim(i));
  return caffe_tch_blob_proto_write(filename.c_str(), proto.has_, proto.legacy_, dims.data(),
                                    static_cast<int>(dims.size()), proto.data_.data(), proto.data_.size(),
                                    proto.diff_.data(), proto.diff_.size()) == 0;
}
inline bool WriteProtoToBinaryFile(const BlobProto& proto, const char* filename) {
  return WriteProtoToBinaryFile(proto, std::string(filename));
}

// A dataset's record: a C×H×W image as raw bytes (`data`, channel by
// channel) or floats (`float_data`), or an encoded image file (`encoded`),
// and its label.
class Datum {
 public:
  int channels() const { return channels_; }
  int height() const { return height_; }
  int width() const { return width_; }
  int label() const { return label_; }
  bool encoded() const { return encoded_; }
  const std::string& data() const { return data_; }
  void set_channels(int value) { set(channels_, value, kChannels); }
  void set_height(int value) { set(height_, value, kHeight); }
  void set_width(int value) { set(width_, value, kWidth); }
  void set_label(int value) { set(label_, value, kLabel); }
  void set_encoded(bool value) { set(encoded_, value, kEncoded); }
  void set_data(const std::string& value) { set(data_, value, kData); }
  void set_data(const char* value) { set(data_, std::string(value), kData); }
  void set_data(const void* value, size_t size) {
    set(data_, std::string(static_cast<const char*>(value), size), kData);
  }
  std::string* mutable_data() {
    has_ |= kData;
    return &data_;
  }
  bool has_channels() const { return has_ & kChannels; }
  bool has_height() const { return has_ & kHeight; }
  bool has_width() const { return has_ & kWidth; }
  bool has_data() const { return has_ & kData; }
  bool has_label() const { return has_ & kLabel; }
  bool has_encoded() const { return has_ & kEncoded; }
  void clear_channels() { clear(channels_, kChannels); }
  void clear_height() { clear(height_, kHeight); }
  void clear_width() { clear(width_, kWidth); }
  void clear_label() { clear(label_, kLabel); }
  void clear_encoded() { clear(encoded_, kEncoded); }
  void clear_data() { clear(data_, kData); }

  int float_data_size() const { return static_cast<int>(float_data_.size()); }
  float float_data(int i) const { return float_data_.at(i); }
  void set_float_data(int i, float value) { float_data_.at(i) = value; }
  void add_float_data(float value) { float_data_.push_back(value); }
  void clear_float_data() { float_data_.clear(); }

  void Clear() { *this = Datum(); }
  void CopyFrom(const Datum& other) { *this = other; }

  // The record in protobuf's encoding, byte for byte what Caffe's converters write.
  bool SerializeToString(std::string* out) const {
    CaffeTchDatumFields f = fields();
    out->resize(data_.size() + 5 * float_data_.size() + 64);
    ptrdiff_t n = caffe_tch_datum_serialize(&f, &(*out)[0], out->size());
    if (n < 0) return false;
    if (static_cast<size_t>(n) > out->size()) {
      out->resize(static_cast<size_t>(n));
      n = caffe_tch_datum_serialize(&f, &(*out)[0], out->size());
      if (n < 0) return false;
    }
    out->resize(static_cast<size_t>(n));
    return true;
  }
  std::string SerializeAsString() const {
    std::string out;
    if (!SerializeToString(&out)) throw std::runtime_error(caffe_tch_last_error());
    return out;
  }
  int ByteSize() const { return static_cast<int>(SerializeAsString().size()); }
  size_t ByteSizeLong() const { return SerializeAsString().size(); }
  // False (the datum unchanged) when the bytes are not a Datum.
  bool ParseFromString(const std::string& bytes) { return ParseFromArray(bytes.data(), static_cast<int>(bytes.size())); }
  bool ParseFromArray(const void* bytes, int size) {
    CaffeTchDatum* parsed = caffe_tch_datum_parse(static_cast<const char*>(bytes), size < 0 ? 0 : size);
    if (parsed == nullptr) return false;
    take(parsed);
    return true;
  }

 private:
  friend bool DecodeDatum(Datum* datum, bool is_color);
  friend bool DecodeDatumNative(Datum* datum);
  friend bool ReadImageToDatum(const std::string& filename, int label, int height, int width, bool is_color,
                               const std::string& encoding, Datum* datum);
  friend bool ReadFileToDatum(const std::string& filename, int label, Datum* datum);
  static constexpr uint32_t kChannels = 1, kHeight = 2, kWidth = 4, kData = 8, kLabel = 16, kEncoded = 32;
  template <typename T>
  void set(T& field, const T& value, uint32_t bit) {
    field = value;
    has_ |= bit;
  }
  template <typename T>
  void clear(T& field, uint32_t bit) {
    field = T();
    has_ &= ~bit;
  }
  CaffeTchDatumFields fields() const {
    CaffeTchDatumFields f;
    f.has = has_;
    f.channels = channels_;
    f.height = height_;
    f.width = width_;
    f.label = label_;
    f.encoded = encoded_ ? 1 : 0;
    f.data = data_.data();
    f.data_len = data_.size();
    f.float_data = float_data_.data();
    f.float_len = float_data_.size();
    return f;
  }
  // The fields of a record libcaffe made (which is freed here), replacing these.
  void take(CaffeTchDatum* made) {
    CaffeTchDatumFields f;
    int ok = caffe_tch_datum_fields(made, &f);
    if (ok == 0) {
      has_ = f.has;
      channels_ = f.channels;
      height_ = f.height;
      width_ = f.width;
      label_ = f.label;
      encoded_ = f.encoded != 0;
      data_.assign(f.data, f.data_len);
      float_data_.assign(f.float_data, f.float_data + f.float_len);
    }
    caffe_tch_datum_free(made);
    if (ok != 0) throw std::runtime_error("Datum: libcaffe returned no record");
  }
  // An encoded record decoded (`color` 1, 0 gray, -1 as stored): its
  // pixels, shape and `encoded: false` replace the image file; the label stays.
  bool decode(int color) {
    if (!encoded_) return false;
    CaffeTchDatum* decoded = caffe_tch_datum_decode_image(data_.data(), data_.size(), color);
    if (decoded == nullptr) throw std::runtime_error(caffe_tch_last_error());
    uint32_t had_label = has_ & kLabel;
    int label = label_;
    take(decoded);
    has_ |= had_label;
    label_ = label;
    return true;
  }
  // A record read by libcaffe, or false with its error logged as Caffe's io.cpp logs it.
  bool take_read(CaffeTchDatum* read) {
    if (read == nullptr) {
      std::cerr << "E io.cpp] " << caffe_tch_last_error() << std::endl;
      return false;
    }
    take(read);
    return true;
  }

  uint32_t has_ = 0;
  int32_t channels_ = 0, height_ = 0, width_ = 0, label_ = 0;
  bool encoded_ = false;
  std::string data_;
  std::vector<float> float_data_;
};

// Caffe's io.hpp on records. An encoded record decoded in place (as stored,
// or with three channels or one): true if it was encoded.
inline bool DecodeDatumNative(Datum* datum) { return datum->decode(-1); }
inline bool DecodeDatum(Datum* datum, bool is_color) { return datum->decode(is_color ? 1 : 0); }
// An image file as a record, resized to height×width unless either is 0,
// BGR or gray, raw or (with `encoding`, "png" or "jpg") encoded, as
// convert_imageset writes it; false (the error logged) if it cannot be read.
inline bool ReadImageToDatum(const std::string& filename, int label, int height, int width, bool is_color,
                             const std::string& encoding, Datum* datum) {
  return datum->take_read(caffe_tch_datum_read_image(filename.c_str(), label, height, width, is_color ? 1 : 0,
                                                     encoding.c_str()));
}
inline bool ReadImageToDatum(const std::string& filename, int label, int height, int width, bool is_color,
                             Datum* datum) {
  return ReadImageToDatum(filename, label, height, width, is_color, "", datum);
}
inline bool ReadImageToDatum(const std::string& filename, int label, int height, int width, Datum* datum) {
  return ReadImageToDatum(filename, label, height, width, true, datum);
}
inline bool ReadImageToDatum(const std::string& filename, int label, bool is_color, Datum* datum) {
  return ReadImageToDatum(filename, label, 0, 0, is_color, datum);
}
inline bool ReadImageToDatum(const std::string& filename, int label, Datum* datum) {
  return ReadImageToDatum(filename, label, 0, 0, true, datum);
}
inline bool ReadImageToDatum(const std::string& filename, int label, const std::string& encoding, Datum* datum) {
  return ReadImageToDatum(filename, label, 0, 0, true, encoding, datum);
}
// A file's bytes as an encoded record.
inline bool ReadFileToDatum(const std::string& filename, int label, Datum* datum) {
  return datum->take_read(caffe_tch_datum_read_file(filename.c_str(), label));
}
inline bool ReadFileToDatum(const std::string& filename, Datum* datum) { return ReadFileToDatum(filename, -1, datum); }

}  // namespace caffe

#endif  // CAFFE_TCH_INTERNAL_RECORDS_HPP_
