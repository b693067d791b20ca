"""pycaffe's interface (``import caffe``) on caffe-tch.

The native module ``caffe._caffe`` links PyTorch's libtorch (the torch wheel's
``torch/lib``). ``_load_libtorch`` opens that library from the installed wheel
without importing torch, whose Python package costs far more time and memory
than the library; CUDA is opened only when asked for (``set_mode_gpu``).
"""


def _load_libtorch():
    import ctypes
    import importlib.util
    import os
    import sys

    if "torch" in sys.modules:
        return  # torch's import loaded the same library already
    spec = importlib.util.find_spec("torch")
    if spec is None or not spec.origin:
        raise ImportError("caffe needs PyTorch's libtorch: pip install torch==2.13.0")
    lib = os.path.join(os.path.dirname(spec.origin), "lib")
    for name in ("libc10.so", "libtorch_cpu.so"):
        path = os.path.join(lib, name)
        try:
            ctypes.CDLL(path, mode=ctypes.RTLD_GLOBAL)
        except OSError as e:
            raise ImportError(f"caffe cannot load {path}: {e} (pip install torch==2.13.0)") from e


_load_libtorch()

from ._caffe import (  # noqa: F401
    TRAIN,
    TEST,
    __version__,
    layer_type_list,
    load_layer_library,
    set_device,
    NCCL,
    multiprocess,
    set_mode_cpu,
    set_mode_gpu,
    set_multiprocess,
    set_random_seed,
    set_solver_count,
    set_solver_rank,
    solver_count,
    solver_rank,
)
from .pycaffe import (  # noqa: F401
    AdaDeltaSolver,
    AdaGradSolver,
    AdamSolver,
    Blob,
    Layer_,
    Net,
    NesterovSolver,
    RMSPropSolver,
    SGDSolver,
    Timer,
    get_solver,
    get_solver_from_string,
    has_nccl,
    init_log,
    log,
)
from .layer import Layer  # noqa: F401,E402  (Python layers' base class)
from . import io  # noqa: F401,E402
from .classifier import Classifier  # noqa: F401,E402
from .detector import Detector  # noqa: F401,E402
from .net_spec import NetSpec, layers, params, to_proto  # noqa: F401,E402
from .proto import caffe_pb2  # noqa: F401,E402  (also caffe.proto.caffe_pb2)

# C++ layer libraries named by CAFFE_TCH_LAYER_LIBRARIES, so a script runs
# unchanged with a fork's layers (load_layer_library loads one by hand).
from ._caffe import _load_layer_libraries_from_env  # noqa: E402

_load_layer_libraries_from_env()
