"""vidgen: train, sample and evaluate video generators (StyleGAN-V, Video Diffusion) from one CLI.

Importing this package must stay cheap: `vidgen --help` may not import torch.
"""

__version__ = "0.1.0"
