"""Caffe's protobuf schema for Python: `from caffe.proto import caffe_pb2`."""
