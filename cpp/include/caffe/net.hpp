// caffe-tch's C++ interface: Caffe's caffe/net.hpp, for programs that include
// it rather than caffe/caffe.hpp; what it declares is in caffe/caffe.hpp.
#ifndef CAFFE_TCH_NET_HPP_
#define CAFFE_TCH_NET_HPP_

#include "caffe/caffe.hpp"

#endif  // CAFFE_TCH_NET_HPP_
