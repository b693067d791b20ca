// caffe-tch's C++ interface: Caffe's caffe/util/db_lmdb.hpp, for programs that include
// it rather than caffe/util/db.hpp; what it declares is in caffe/util/db.hpp.
#ifndef CAFFE_TCH_UTIL_DB_LMDB_HPP_
#define CAFFE_TCH_UTIL_DB_LMDB_HPP_

#include "caffe/util/db.hpp"

#endif  // CAFFE_TCH_UTIL_DB_LMDB_HPP_
