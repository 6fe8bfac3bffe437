"""The GAN objective every adversarial family shares (StyleGAN-V, TGANv2): the non-saturating logistic loss
(Goodfellow et al. 2014, §3) and the zero-centred gradient penalty on real data (R1, Mescheder et al. 2018, eq. 9;
TGANv2's "Dirac" regulariser is the same penalty). Each family chooses how to weigh the penalty and reduce it
over frames; the maths is here once.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F


def generator_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    """-log sigmoid(D(G(z))), averaged: the non-saturating generator loss."""
    return F.softplus(-fake_logits).mean()


def discriminator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """-log sigmoid(D(x)) - log(1 - sigmoid(D(G(z)))), each term averaged over its logits."""
    return F.softplus(fake_logits).mean() + F.softplus(-real_logits).mean()


def per_frame_gradient_norms(logits: torch.Tensor, inputs: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """||d(sum of logits) / d x_t||² of every frame t of every input video x ([B, C, T, H, W], requires_grad),
    in float32 or wider: one [B, T] tensor per input. The graph is kept (create_graph), so a penalty built from
    them trains the discriminator (a double backward)."""
    grads = torch.autograd.grad(logits.sum(), list(inputs), create_graph=True)
    return [grad.to(torch.promote_types(grad.dtype, torch.float32)).square().sum(dim=[1, 3, 4]) for grad in grads]
