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
export PATH := $(VENV)/bin:$(PATH)
TORCH_STAMP := $(VENV)/.torch-$(TORCH_VERSION) $(VENV)/.export-runtimes
else
TORCH_STAMP :=
endif

.PHONY: all build test lint demo bench clean-venv layers-doc system-deps

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

# Fashion-MNIST (Debian's dataset-fashion-mnist) is the offline stand-in for
# MNIST: the data tests and the demo use it. Installed when running as root.
# libhdf5 (Debian's libhdf5-dev, found through pkg-config) is linked by the
# hdf5-metno crate: HDF5Data/HDF5Output and snapshot_format: HDF5.
# Gloo's headers (Debian's libgloo-dev) are needed to compile the c10d shim
# (csrc/dist_shim.cpp, distributed training); Gloo's code comes from libtorch.
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

build: $(TORCH_STAMP) system-deps
	$(CARGO) build --release --locked

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
	if [ -s $(SKIP_LOG) ]; then \
	  echo "$$(wc -l < $(SKIP_LOG)) test(s) SKIPPED for a missing prerequisite ($(SKIP_LOG)):"; cat $(SKIP_LOG); \
	else echo "No test skipped."; fi; \
	exit $$status

# The style gates CI runs before the tests: one format, no clippy warnings.
lint: build
	$(CARGO) fmt --check
	$(CARGO) clippy --release --locked --all-targets -- -D warnings

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
	  -weights $(DEMO_OUT)/lenet10_dropin_iter_$(DEMO_ITERS).caffemodel -iterations 100 2>&1 | tail -3
	ln -sf caffe.INFO $(DEMO_OUT)/lenet10_dropin_d2500.log  # the legend shows the file name
	$(CAFFE) plot $(DEMO_OUT)/lenet10_dropin_d2500.log -o $(DEMO_OUT)/test_accuracy.png -y test-accuracy \
	  -title "LeNet(10)+DropIn d=2500 on $$(head -1 data/mnist/DATASET | cut -d' ' -f1) (make demo)"
	@echo "Accuracy curve: $(DEMO_OUT)/test_accuracy.png; log: $(DEMO_OUT)/caffe.INFO"

bench: build
	$(CARGO) bench --locked

# Regenerates SUPPORTED-LAYERS.md from the layer registry and the exporters' tables.
layers-doc: build
	UPDATE_SUPPORTED_LAYERS=1 $(CARGO) test --release --locked --test suite -- supported_layers::

clean-venv:
	rm -rf $(VENV)
