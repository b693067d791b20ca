# caffe-tch: `make demo` and `make test` do all the set-up on a fresh machine.
#
# libtorch comes from PyTorch 2.13.0 (what tch 0.26 needs) in a local virtualenv,
# unless LIBTORCH points at a standalone libtorch.
SHELL := /bin/bash
TORCH_VERSION := 2.13.0
VENV ?= $(CURDIR)/.venv
CAFFE := $(CURDIR)/target/release/caffe
CARGO ?= cargo

ifeq ($(LIBTORCH),)
export LIBTORCH_USE_PYTORCH := 1
# Prepended once: a sub-make sees it already there (a PATH that changes between
# cargo runs makes pyo3's build script, and so the Python module, rebuild).
export PATH := $(if $(findstring $(VENV)/bin:,$(PATH)),$(PATH),$(VENV)/bin:$(PATH))
TORCH_STAMP := $(VENV)/.torch-$(TORCH_VERSION) $(VENV)/.export-runtimes $(VENV)/.python-tools-2 $(VENV)/.opencv-4 $(VENV)/.opencv-5 $(VENV)/.openvino-2026 $(VENV)/.scipy-1
else
TORCH_STAMP :=
endif

.PHONY: all build python wheel test pytest lint demo bench clean-venv layers-doc cpp-messages system-deps fuzz cuda-headers

all: build

$(VENV)/.torch-$(TORCH_VERSION):
	python3 -m venv $(VENV)
	@# --no-compile: Python compiles the modules it imports when it first needs
	@# them; compiling all of torch up front costs a fresh set-up about 20 s.
	$(VENV)/bin/pip install --quiet --no-compile --disable-pip-version-check torch==$(TORCH_VERSION) numpy
	touch $@

# What `caffe export -verify` and the export tests run exported models in:
# onnx (checker, shape inference), onnxruntime, and safetensors for model.py.
$(VENV)/.export-runtimes: $(VENV)/.torch-$(TORCH_VERSION)
	$(VENV)/bin/pip install --quiet --no-compile --disable-pip-version-check onnx==1.23.2 onnxruntime==1.32.0 safetensors==0.8.0
	touch $@

# The Python module's test runner and wheel builder, and what caffe.io,
# caffe_pb2 and caffe.draw use (pillow decodes images; protobuf builds the
# message classes; pydot writes the graphs Graphviz draws).
$(VENV)/.python-tools-2: $(VENV)/.torch-$(TORCH_VERSION)
	$(VENV)/bin/pip install --quiet --no-compile --disable-pip-version-check pytest==9.2.0 maturin==1.16.0 pillow==13.0.0 protobuf==7.36.2 pydot==4.0.1
	touch $@

# OpenCV 4's Caffe importer, the independent implementation of the SSD fork's
# layers that python/tests/test_ssd_opencv.py compares caffe-tch with (OpenCV 5
# dropped Caffe input).
$(VENV)/.opencv-4: $(VENV)/.torch-$(TORCH_VERSION)
	$(VENV)/bin/pip install --quiet --no-compile --disable-pip-version-check opencv-python-headless==4.14.0.94
	touch $@

# OpenCV 5's DNN, one of the runtimes a Caffe user leaves for (it reads no
# Caffe files): tests/export_onnx.rs runs the exported models in it. Kept in a
# folder of its own (PYTHONPATH), since the venv's cv2 is OpenCV 4.
$(VENV)/.opencv-5: $(VENV)/.torch-$(TORCH_VERSION)
	$(VENV)/bin/pip install --quiet --no-compile --disable-pip-version-check --no-deps --target $(VENV)/opencv5 opencv-python-headless==5.1.0.95
	touch $@

# OpenVINO, which dropped Caffe input too: `caffe export -verify_with
# openvino` and tests/export_onnx.rs run the exported models on its CPU plugin.
$(VENV)/.openvino-2026: $(VENV)/.torch-$(TORCH_VERSION)
	$(VENV)/bin/pip install --quiet --no-compile --disable-pip-version-check --no-deps openvino==2026.4.1
	touch $@

# SciPy's MAT-file reader, which checks the files DeepLab's MatWrite layer
# writes (what its users load them with).
$(VENV)/.scipy-1: $(VENV)/.torch-$(TORCH_VERSION)
	$(VENV)/bin/pip install --quiet --no-compile --disable-pip-version-check scipy==1.17.1
	touch $@

# Fashion-MNIST (Debian's dataset-fashion-mnist) is the offline stand-in for
# MNIST: the data tests and the demo use it. Installed when running as root.
# libhdf5 (Debian's libhdf5-dev, found through pkg-config) is linked by the
# hdf5-metno crate: HDF5Data/HDF5Output and snapshot_format: HDF5.
# Gloo's headers (Debian's libgloo-dev) are needed to compile the c10d shim
# (csrc/dist_shim.cpp, distributed training); Gloo's code comes from libtorch.
# libjpeg's and OpenJPEG's headers (libjpeg-dev, libopenjp2-7-dev): JPEG and
# JPEG 2000 are decoded by the libraries OpenCV uses.
# Graphviz's dot renders caffe.draw's graphs (python/draw_net.py).
FMNIST_DIR := /usr/share/datasets/fashion-mnist
system-deps:
	@if [ ! -d $(FMNIST_DIR) ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get install -y -qq dataset-fashion-mnist >/dev/null 2>&1 || \
	    { apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist; } || \
	    echo "warning: could not install dataset-fashion-mnist; tests that need it will skip"; \
	  else \
	    echo "note: Fashion-MNIST not found; run 'sudo apt-get install dataset-fashion-mnist' (tests that need it will skip)"; \
	  fi; \
	fi
	@if ! pkg-config --exists hdf5 2>/dev/null; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get install -y -qq libhdf5-dev pkg-config >/dev/null 2>&1 || \
	    { apt-get update -qq && apt-get install -y -qq libhdf5-dev pkg-config; } || \
	    echo "warning: could not install libhdf5-dev; the build needs it (HDF5 layers and snapshots)"; \
	  else \
	    echo "note: libhdf5 not found; run 'sudo apt-get install libhdf5-dev pkg-config' (the build needs it)"; \
	  fi; \
	fi
	@if [ ! -f /usr/include/gloo/config.h ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get install -y -qq libgloo-dev >/dev/null 2>&1 || \
	    { apt-get update -qq && apt-get install -y -qq libgloo-dev; } || \
	    echo "warning: could not install libgloo-dev; the build needs its headers (distributed training)"; \
	  else \
	    echo "note: Gloo headers not found; run 'sudo apt-get install libgloo-dev' (the build needs them)"; \
	  fi; \
	fi
	@if [ ! -f /usr/include/jpeglib.h ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get install -y -qq libjpeg-dev >/dev/null 2>&1 || \
	    { apt-get update -qq && apt-get install -y -qq libjpeg-dev; } || \
	    echo "warning: could not install libjpeg-dev; the build needs it (JPEG decoding)"; \
	  else \
	    echo "note: libjpeg headers not found; run 'sudo apt-get install libjpeg-dev' (the build needs them)"; \
	  fi; \
	fi
	@if ! ls /usr/include/openjpeg-*/openjpeg.h >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get install -y -qq libopenjp2-7-dev >/dev/null 2>&1 || \
	    { apt-get update -qq && apt-get install -y -qq libopenjp2-7-dev; } || \
	    echo "warning: could not install libopenjp2-7-dev; the build needs it (JPEG 2000 decoding)"; \
	  else \
	    echo "note: OpenJPEG headers not found; run 'sudo apt-get install libopenjp2-7-dev' (the build needs them)"; \
	  fi; \
	fi
	@if ! command -v dot >/dev/null; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get install -y -qq graphviz >/dev/null 2>&1 || \
	    { apt-get update -qq && apt-get install -y -qq graphviz; } || \
	    echo "warning: could not install graphviz; caffe.draw's tests will skip"; \
	  else \
	    echo "note: Graphviz not found; run 'sudo apt-get install graphviz' (caffe.draw renders with it)"; \
	  fi; \
	fi

# The CUDA headers that the NCCL shim (csrc/nccl_shim.cpp, -gpu with several
# devices) needs and no installed wheel has: the CUDA C runtime's and CCCL's,
# from PyPI, for the CUDA 13.0 the torch wheel is built with. Build-only: they
# go into their own folder, not the venv. Without them build.rs skips the shim
# with a warning and everything else builds; the touch makes cargo look again.
CUDA_HEADERS := $(CURDIR)/.venv-build-cuda
$(CUDA_HEADERS)/.installed: | $(TORCH_STAMP)
	@if $(VENV)/bin/pip install --quiet --disable-pip-version-check --no-deps --target $(CUDA_HEADERS) \
	    'nvidia-cuda-crt==13.0.*' 'nvidia-cuda-cccl==13.0.*'; then \
	  touch $@ csrc/nccl_shim.cpp; \
	else echo "warning: CUDA headers not installed: NCCL support (several GPUs) will not be built"; fi
cuda-headers: $(CUDA_HEADERS)/.installed

build: $(TORCH_STAMP) system-deps cuda-headers
	$(CARGO) build --release --locked
	@$(MAKE) --no-print-directory python

# `import caffe` (python/): the extension in release (a default member of the
# workspace, so the same cargo command as `build`: a `-p caffe-python` build
# would resolve features apart and recompile the crate each time the two
# alternate), copied next to the package's Python files, and a .pth file that
# puts python/ on the venv's path.
PY_EXT := python/caffe/_caffe.abi3.so
python:
ifeq ($(LIBTORCH),)
	$(CARGO) build --release --locked
	cp target/release/lib_caffe.so $(PY_EXT).tmp && mv $(PY_EXT).tmp $(PY_EXT)
	echo "$(CURDIR)/python" > "$$($(VENV)/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/caffe-tch-dev.pth"
else
	@echo "note: LIBTORCH is set (no project venv): the Python module is not built; 'make wheel' builds it for a venv with torch $(TORCH_VERSION)"
endif

# A wheel (abi3, Python >= 3.9) that installs next to torch==$(TORCH_VERSION): target/wheels/.
wheel: $(TORCH_STAMP)
	@# libtorch comes from the torch wheel (rpath $$ORIGIN/../torch/lib), so it is not bundled.
	$(VENV)/bin/maturin build --release --locked --auditwheel skip -m python/Cargo.toml -o target/wheels

# Tests run against the release build: the numerical tests are slow in debug,
# and sharing one profile halves the compile time. The integration tests are
# one binary (tests/suite.rs; `cargo test --release --test suite -- data::` runs
# one file's tests). A test whose prerequisite is missing (Fashion-MNIST, ldd,
# python3, util-linux script) passes with a `SKIPPED: <test>: <what>` line;
# they are counted here at the end. With CI=true a skip fails the test instead.
SKIP_LOG := $(CURDIR)/target/tests-skipped.txt
test: build
	@mkdir -p $(dir $(SKIP_LOG)) && rm -f $(SKIP_LOG)
	@echo "$(CARGO) test --release --locked --no-fail-fast"
	@CAFFE_TCH_SKIP_LOG=$(SKIP_LOG) $(CARGO) test --release --locked --no-fail-fast; status=$$?; \
	CAFFE_TCH_SKIP_LOG=$(SKIP_LOG) $(MAKE) --no-print-directory pytest || status=1; \
	if [ -s $(SKIP_LOG) ]; then \
	  echo "$$(wc -l < $(SKIP_LOG)) test(s) SKIPPED for a missing prerequisite ($(SKIP_LOG)):"; cat $(SKIP_LOG); \
	else echo "No test skipped."; fi; \
	exit $$status

# The Python module's tests (python/tests), through the venv's pytest. A
# missing prerequisite skips with its reason (and fails under CI=true).
pytest:
ifeq ($(LIBTORCH),)
	cd python && CAFFE=$(CAFFE) $(VENV)/bin/python -m pytest -q tests
else
	@echo "note: LIBTORCH is set (no project venv): the Python tests need it"; [ "$$CI" != true ]
endif

# The style gates CI runs before the tests: one format, no clippy warnings.
lint: build
	$(CARGO) fmt --check --all
	$(CARGO) clippy --release --locked --workspace --all-targets -- -D warnings

# The main job: data, then LeNet(10)+DropIn trained on the CPU (progress on a
# terminal), the final test accuracy, and the accuracy curve as a PNG.
# `make demo DEMO_ITERS=600 DEMO_TEST_INTERVAL=200` runs a shorter version.
DEMO_OUT := demo-out
DEMO_ITERS ?= 3000
DEMO_TEST_INTERVAL ?= 500
demo: build
	$(CAFFE) device_query
	$(CAFFE) data mnist data/mnist
	rm -rf $(DEMO_OUT) && mkdir -p $(DEMO_OUT)
	sed -e 's/^max_iter: .*/max_iter: $(DEMO_ITERS)/' -e 's/^test_interval: .*/test_interval: $(DEMO_TEST_INTERVAL)/' experiments/demo/lenet10_dropin_solver.prototxt > $(DEMO_OUT)/solver.prototxt
	GLOG_log_dir=$(DEMO_OUT) $(CAFFE) train -solver $(DEMO_OUT)/solver.prototxt
	$(CAFFE) test -model models/lenet10_dropin/train_val_d2500.prototxt \
	  -weights $(DEMO_OUT)/lenet10_dropin_iter_$(DEMO_ITERS).caffemodel -iteration $(DEMO_ITERS) -iterations 100 2>&1 | tail -3
	ln -sf caffe.INFO $(DEMO_OUT)/lenet10_dropin_d2500.log  # the legend shows the file name
	$(CAFFE) plot $(DEMO_OUT)/lenet10_dropin_d2500.log -o $(DEMO_OUT)/test_accuracy.png -y test-accuracy \
	  -title "LeNet(10)+DropIn d=2500 on $$(head -1 data/mnist/DATASET | cut -d' ' -f1) (make demo)"
	@echo "Accuracy curve: $(DEMO_OUT)/test_accuracy.png; log: $(DEMO_OUT)/caffe.INFO"

bench: build
	$(CARGO) bench --locked

# Coverage-guided fuzzing of every reader (fuzz/README.md): each target in
# FUZZ_TARGETS runs for FUZZ_SECONDS, seeded from the real test files. Needs
# the nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz`). A crash
# stops the loop; its input is in fuzz/artifacts/<target>/.
FUZZ_SECONDS ?= 60
FUZZ_TARGETS ?= prototxt binary_files datum net_build parse_log hdf5 leveldb lmdb
TORCH_LIB = $(shell $(VENV)/bin/python -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))' 2>/dev/null)
fuzz: $(TORCH_STAMP)
	PYTHON=$(VENV)/bin/python fuzz/seeds.sh
	cd fuzz && for t in $(FUZZ_TARGETS); do \
	  LD_LIBRARY_PATH=$(TORCH_LIB) $(CARGO) +nightly fuzz run -s none -O $$t corpus/$$t -- \
	    -max_total_time=$(FUZZ_SECONDS) -rss_limit_mb=4096 -timeout=30 -print_final_stats=1 || exit 1; \
	done

# Regenerates SUPPORTED-LAYERS.md from the layer registry and the exporters' tables.
layers-doc: build
	UPDATE_SUPPORTED_LAYERS=1 $(CARGO) test --release --locked --test suite -- supported_layers::

# Regenerates the C++ interface's protobuf accessors from the schema's descriptor.
cpp-messages: $(TORCH_STAMP)
	$(VENV)/bin/python cpp/gen_messages.py

clean-venv:
	rm -rf $(VENV)
