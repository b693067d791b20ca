// caffe-tch's C++ interface: Caffe's caffe/layers/neuron_layer.hpp, which a
// fork's layer headers include for NeuronLayer; it is in caffe/caffe.hpp.
#ifndef CAFFE_TCH_LAYERS_NEURON_LAYER_HPP_
#define CAFFE_TCH_LAYERS_NEURON_LAYER_HPP_

#include "caffe/layer.hpp"

#endif  // CAFFE_TCH_LAYERS_NEURON_LAYER_HPP_
