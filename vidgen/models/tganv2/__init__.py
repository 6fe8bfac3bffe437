"""TGANv2 (Saito et al., IJCV 2020): a ConvLSTM video GAN trained sparsely on a multi-level pyramid of its videos."""
