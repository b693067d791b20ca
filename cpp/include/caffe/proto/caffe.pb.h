// caffe-tch's C++ interface: Caffe's caffe/proto/caffe.pb.h, for programs that include
// it rather than caffe/caffe.hpp; what it declares is in caffe/caffe.hpp.
#ifndef CAFFE_TCH_PROTO_CAFFE_PB_H_
#define CAFFE_TCH_PROTO_CAFFE_PB_H_

#include "caffe/caffe.hpp"

#endif  // CAFFE_TCH_PROTO_CAFFE_PB_H_
