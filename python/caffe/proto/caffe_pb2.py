"""The message classes of caffe-tch's `proto/caffe.proto`, as protoc's
`caffe_pb2.py` would define them.

protoc is not needed: the compiled schema ships next to this file as
`caffe.desc` (a serialized FileDescriptorSet, byte-equal to the one the Rust
library embeds; `tests/python_descriptor.rs` keeps the two in step). The module
is filled the way protoc's own output fills itself, so every message
(`NetParameter`, `LayerParameter`, `Datum`, `BlobProto`...), every top-level
enum and its values (`Phase`, `TRAIN`, `TEST`), and nested enum values
(`PoolingParameter.MAX`) are attributes here, and `DESCRIPTOR` is the file.
"""
import os as _os

from google.protobuf import descriptor_pb2 as _descriptor_pb2
from google.protobuf import descriptor_pool as _descriptor_pool
from google.protobuf.internal import builder as _builder

_DESC_PATH = _os.path.join(_os.path.dirname(_os.path.abspath(__file__)), 'caffe.desc')


def _load_file_descriptor():
    try:
        with open(_DESC_PATH, 'rb') as f:
            fds = _descriptor_pb2.FileDescriptorSet.FromString(f.read())
    except OSError as e:
        raise ImportError('caffe_pb2: cannot read the compiled schema %s: %s' % (_DESC_PATH, e)) from e
    files = [f for f in fds.file if f.name == 'caffe.proto']
    if len(files) != 1:
        raise ImportError('caffe_pb2: %s holds no caffe.proto file descriptor' % _DESC_PATH)
    serialized = files[0].SerializeToString()
    # protoc's output registers in the default pool (so text_format and
    # reflection find the types by name). If another copy of a different
    # caffe.proto is already there (say a second caffe_pb2 from another
    # package), fall back to a private pool rather than failing the import.
    try:
        return _descriptor_pool.Default().AddSerializedFile(serialized)
    except TypeError:
        return _descriptor_pool.DescriptorPool().AddSerializedFile(serialized)


DESCRIPTOR = _load_file_descriptor()
_globals = globals()
_builder.BuildMessageAndEnumDescriptors(DESCRIPTOR, _globals)
_builder.BuildTopDescriptorsAndMessages(DESCRIPTOR, __name__, _globals)
del _globals
