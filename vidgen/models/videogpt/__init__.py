"""VideoGPT (Yan, Zhang, Abbeel, Srinivas 2021, arXiv 2104.10157): a VQ-VAE with an EMA codebook compresses a clip
into a grid of discrete codes (stage 1: `vqvae.py`, `codebook.py`, `axial.py`); a GPT then models the flattened
code grid (stage 2)."""
