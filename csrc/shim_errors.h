// What every C shim over libtorch shares (csrc/dist_shim.cpp, nccl_shim.cpp,
// cuda_graph.cpp, grad_edges.cpp, onednn_ops.cpp): a C++ exception must never
// unwind into Rust, so each entry point runs its body through `guarded`, which returns
// NULL on success or the exception's message as a malloc'd string (freed by
// the shim's string_free, or by the caller's free).
#pragma once

#include <cstdlib>
#include <cstring>
#include <exception>
#include <string>

#include <c10/util/Exception.h>

namespace caffe_shim {

inline char* dup_message(const std::string& s) {
  char* out = static_cast<char*>(std::malloc(s.size() + 1));
  if (out != nullptr) {
    std::memcpy(out, s.c_str(), s.size() + 1);
  }
  return out;
}

// c10::Error's what() carries a C++ backtrace; the user needs the message.
template <typename F>
char* guarded(F&& f) {
  try {
    f();
    return nullptr;
  } catch (const c10::Error& e) {
    return dup_message(e.what_without_backtrace());
  } catch (const std::exception& e) {
    return dup_message(e.what());
  } catch (...) {
    return dup_message("unknown C++ exception");
  }
}

}  // namespace caffe_shim
