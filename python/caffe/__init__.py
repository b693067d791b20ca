"""pycaffe's interface (``import caffe``) on caffe-tch.

The native module ``caffe._caffe`` links PyTorch's libtorch; importing torch
first loads that library (and its CUDA libraries, when present) into the
process, so the extension finds it without LD_LIBRARY_PATH.
"""
import torch  # noqa: F401  (loads libtorch for _caffe)

from ._caffe import (  # noqa: F401
    TRAIN,
    TEST,
    __version__,
    layer_type_list,
    set_device,
    set_mode_cpu,
    set_mode_gpu,
    set_random_seed,
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
    get_solver,
)
from .layer import Layer  # noqa: F401,E402  (Python layers' base class)
from . import io  # noqa: F401,E402
from .classifier import Classifier  # noqa: F401,E402
from .detector import Detector  # noqa: F401,E402
from .net_spec import NetSpec, layers, params, to_proto  # noqa: F401,E402
from .proto import caffe_pb2  # noqa: F401,E402  (also caffe.proto.caffe_pb2)
