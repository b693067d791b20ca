"""Shared by the tests of caffe-tch's pure-Python pycaffe modules (io,
proto, net_spec, classifier, detector): paths, and `import caffe` from this
checkout's python/ folder when no installed `caffe` package is found."""
import importlib.util
import os
import sys

PYTHON_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REPO = os.path.dirname(PYTHON_DIR)
if importlib.util.find_spec('caffe') is None:
    sys.path.insert(0, PYTHON_DIR)


def repo_path(*parts):
    return os.path.join(REPO, *parts)


def caffe_ref(*parts):
    """A BVLC Caffe reference file in tests/fixtures/caffe-ref/."""
    return repo_path('tests', 'fixtures', 'caffe-ref', *parts)


def caffe_binary():
    """The `caffe` binary of this checkout (cargo build --release), or None."""
    for p in (os.environ.get('CAFFE_TCH_BIN'), repo_path('target', 'release', 'caffe')):
        if p and os.access(p, os.X_OK):
            return p
    return None


def caffe_extension_missing():
    """Why `caffe._caffe` (the compiled module behind caffe.Net) cannot be
    imported, or None when it can."""
    try:
        import caffe._caffe  # noqa: F401
    except ImportError as e:
        return 'caffe._caffe (the compiled extension behind caffe.Net) is not importable: %s' % e
    return None
