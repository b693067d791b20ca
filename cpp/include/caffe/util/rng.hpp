// caffe-tch's C++ interface: Caffe's caffe/util/rng.hpp (convert_imageset's
// shuffle, and caffe/util/math_functions.hpp's random draws). The generator
// is the Mersenne Twister Caffe's boost::mt19937 is, one per thread as
// Caffe's: Caffe::set_random_seed seeds it, and without a seed it is seeded
// from std::random_device as Caffe seeds its own, so a shuffled order
// differs from run to run, as in Caffe.
#ifndef CAFFE_TCH_UTIL_RNG_HPP_
#define CAFFE_TCH_UTIL_RNG_HPP_

#include <algorithm>
#include <random>

namespace caffe {

typedef std::mt19937 rng_t;

inline rng_t* caffe_rng() {
  thread_local rng_t generator{std::random_device{}()};
  return &generator;
}

template <class RandomAccessIterator, class RandomGenerator>
inline void shuffle(RandomAccessIterator begin, RandomAccessIterator end, RandomGenerator* gen) {
  std::shuffle(begin, end, *gen);
}

template <class RandomAccessIterator>
inline void shuffle(RandomAccessIterator begin, RandomAccessIterator end) {
  shuffle(begin, end, caffe_rng());
}

}  // namespace caffe

#endif  // CAFFE_TCH_UTIL_RNG_HPP_
