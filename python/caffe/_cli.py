"""The ``caffe`` command line run by Python: ``python -m caffe._cli train
-solver ...`` is ``caffe train -solver ...`` in a process that can build
Python layers. The ``caffe`` binary runs itself this way for nets that have
them (it links no Python); the code, logs and exit codes are the binary's."""
import signal
import sys

from . import _caffe


def main(argv=None):
    """Runs ``caffe <argv>`` and returns its exit code."""
    # SIGINT and SIGHUP are the command's (caffe train's -sigint_effect and
    # -sighup_effect), as in the binary: Python's own handler would turn them
    # into a KeyboardInterrupt inside whatever layer runs at the time.
    for sig in (signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, signal.SIG_DFL)
    argv = sys.argv[1:] if argv is None else [str(a) for a in argv]
    return _caffe.cli_main(["caffe"] + argv, sys.executable)


if __name__ == "__main__":
    sys.exit(main())
