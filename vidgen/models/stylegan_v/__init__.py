"""StyleGAN-V (Skorokhodov, Tulyakov, Elhoseiny, CVPR 2022): a continuous-time video GAN at the cost of StyleGAN2.

- config.py        StyleGANVConfig (no torch import)
- layers.py        StyleGAN2 layers in plain PyTorch: equalized lr, modulated conv, FIR resampling, minibatch-std
- generator.py     content mapping, motion mapping + acyclic positional encoding, skip synthesis network
- discriminator.py per-frame ResNet D, frames concatenated at 16x16, time-gap projection conditioning
- augment.py       differentiable augmentation shared by all frames of a clip, ADA's adaptive p
- backend.py       StyleGANVBackend: phases G_main / D_main / D_reg, losses, fake clip times, the sampler
"""
