// caffe-tch's C++ interface: Caffe's SignalHandler, which `caffe train`
// programs hand to their solver (`solver->SetActionFunction(
// handler.GetActionFunction())`): while it lives, SIGINT and SIGHUP are
// caught, and the solver asks between iterations which effect the last one
// asked for (stop, snapshot or none).
#ifndef CAFFE_TCH_UTIL_SIGNAL_HANDLER_H_
#define CAFFE_TCH_UTIL_SIGNAL_HANDLER_H_

#include <csignal>

#include "caffe/caffe.hpp"

namespace caffe {

class SignalHandler {
 public:
  SignalHandler(SolverAction::Enum sigint_effect, SolverAction::Enum sighup_effect)
      : sigint_effect_(sigint_effect), sighup_effect_(sighup_effect) {
    struct sigaction action = {};
    action.sa_handler = &SignalHandler::caught;
    action.sa_flags = SA_RESTART;
    sigfillset(&action.sa_mask);
    if (sigaction(SIGINT, &action, &old_int_) != 0 || sigaction(SIGHUP, &action, &old_hup_) != 0)
      throw std::runtime_error("SignalHandler: cannot install the SIGINT and SIGHUP handlers");
  }
  ~SignalHandler() {
    sigaction(SIGINT, &old_int_, nullptr);
    sigaction(SIGHUP, &old_hup_, nullptr);
  }
  SignalHandler(const SignalHandler&) = delete;
  SignalHandler& operator=(const SignalHandler&) = delete;

  // The effect of the signal caught since the last call (SIGHUP first), or NONE.
  SolverAction::Enum CheckForSignals() const {
    if (got(SIGHUP)) return sighup_effect_;
    if (got(SIGINT)) return sigint_effect_;
    return SolverAction::NONE;
  }
  ActionCallback GetActionFunction() {
    return [this]() { return CheckForSignals(); };
  }

 private:
  static volatile std::sig_atomic_t& flag(int signal) {
    static volatile std::sig_atomic_t sigint = 0, sighup = 0;
    return signal == SIGHUP ? sighup : sigint;
  }
  static void caught(int signal) { flag(signal) = 1; }
  static bool got(int signal) {
    if (!flag(signal)) return false;
    flag(signal) = 0;
    return true;
  }

  SolverAction::Enum sigint_effect_, sighup_effect_;
  struct sigaction old_int_, old_hup_;
};

}  // namespace caffe

#endif  // CAFFE_TCH_UTIL_SIGNAL_HANDLER_H_
