// caffe-tch's C++ interface: Caffe's caffe/layer.hpp, for programs that include
// it rather than caffe/caffe.hpp (a layer of the program's own, say); what it
// declares is in caffe/caffe.hpp. As Caffe's, it brings the math functions.
#ifndef CAFFE_TCH_LAYER_HPP_
#define CAFFE_TCH_LAYER_HPP_

#include "caffe/caffe.hpp"
#include "caffe/util/math_functions.hpp"

#endif  // CAFFE_TCH_LAYER_HPP_
