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
TORCH_STAMP := $(VENV)/.torch-$(TORCH_VERSION)
else
TORCH_STAMP :=
endif

.PHONY: all build test demo bench clean-venv layers-doc

all: build

$(VENV)/.torch-$(TORCH_VERSION):
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check torch==$(TORCH_VERSION) numpy
	touch $@

build: $(TORCH_STAMP)
	$(CARGO) build --release --locked

# Tests run against the release build: the numerical tests are slow in debug,
# and sharing one profile halves the compile time.
test: build
	$(CARGO) test --release --locked

demo: build
	$(CAFFE) device_query
	$(CAFFE) summarize models solvers

bench: build
	$(CARGO) bench --locked

# Regenerates SUPPORTED-LAYERS.md from the layer registry.
layers-doc: build
	UPDATE_SUPPORTED_LAYERS=1 $(CARGO) test --release --locked --test supported_layers

clean-venv:
	rm -rf $(VENV)
