// caffe-tch's C++ interface: Caffe's caffe/layers/loss_layer.hpp, which a
// fork's loss layers include for LossLayer; it is in caffe/caffe.hpp.
#ifndef CAFFE_TCH_LAYERS_LOSS_LAYER_HPP_
#define CAFFE_TCH_LAYERS_LOSS_LAYER_HPP_

#include "caffe/layer.hpp"

#endif  // CAFFE_TCH_LAYERS_LOSS_LAYER_HPP_
