// caffe-tch's C++ interface: Caffe's caffe/util/format.hpp (the zero-padded
// keys its converters write).
#ifndef CAFFE_TCH_UTIL_FORMAT_HPP_
#define CAFFE_TCH_UTIL_FORMAT_HPP_

#include <iomanip>
#include <sstream>
#include <string>

namespace caffe {

// `n` in decimal, left-padded with zeros to `numberOfLeadingZeros` digits.
inline std::string format_int(int n, int numberOfLeadingZeros = 0) {
  std::ostringstream s;
  s << std::setw(numberOfLeadingZeros) << std::setfill('0') << n;
  return s.str();
}

}  // namespace caffe

#endif  // CAFFE_TCH_UTIL_FORMAT_HPP_
