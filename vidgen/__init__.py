"""vidgen: train, sample and evaluate video generators (StyleGAN-V, Video Diffusion, VideoGPT, TGANv2, DVG) from one
CLI.

Importing this package must stay cheap: `vidgen --help` may not import torch.
"""

import os

__version__ = "0.1.0"

# oneDNN's AMX kernels (torch 2.13 on Intel CPUs with AMX) compute bfloat16 3D convolutions of one frame with 1-3
# input channels wrongly (relative errors near 1, sometimes 1e35: a TGANv2 discriminator on a one-frame level went
# to NaN under --precision bf16). Its AVX-512 BF16 kernels are right, and float32 never uses AMX. Read when oneDNN
# creates its first kernel, so it holds when vidgen is imported before any convolution runs; a value the user set
# wins. Ignored on CPUs without AVX-512 and on other architectures.
os.environ.setdefault("ONEDNN_MAX_CPU_ISA", "AVX512_CORE_BF16")
