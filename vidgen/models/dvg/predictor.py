"""The frame predictor of SVG (Denton & Fergus 2018, edenton/svg models/lstm.py `lstm`), DVG's deterministic
dynamics: h_{t+1} ≈ LSTM(h_t), with h the frame encoder's latent.

Written stateless: the LSTM state is passed in and returned, never kept on the module (SVG keeps it in
`self.hidden` and resets it by hand), so every sequence starts from zeros (initial_state) and videos in a batch
cannot leak state into each other.
"""

from __future__ import annotations

import torch
from torch import nn

LSTMState = list[tuple[torch.Tensor, torch.Tensor]]
"""(hidden, cell) of each stacked cell, each [B, rnn_size]."""


class FramePredictor(nn.Module):
    """Linear(g_dim, rnn_size) embedding -> `layers` stacked LSTMCells -> Linear(rnn_size, g_dim) + tanh (the
    latent's range)."""

    def __init__(self, g_dim: int, rnn_size: int, layers: int) -> None:
        super().__init__()
        self.rnn_size = rnn_size
        self.embed = nn.Linear(g_dim, rnn_size)
        self.cells = nn.ModuleList(nn.LSTMCell(rnn_size, rnn_size) for _ in range(layers))
        self.output = nn.Sequential(nn.Linear(rnn_size, g_dim), nn.Tanh())

    def initial_state(self, batch: int, device: torch.device, dtype: torch.dtype = torch.float32) -> LSTMState:
        """Zeros: the state at the start of every sequence."""
        return [(torch.zeros(batch, self.rnn_size, device=device, dtype=dtype),
                 torch.zeros(batch, self.rnn_size, device=device, dtype=dtype)) for _ in self.cells]

    def forward(self, h: torch.Tensor, state: LSTMState) -> tuple[torch.Tensor, LSTMState]:
        """One step: the latent of frame t [B, g_dim] and the state after frame t - 1 -> the predicted latent of
        frame t + 1 [B, g_dim] and the state after frame t."""
        x = self.embed(h)  # [B, rnn_size]
        new_state = []
        for cell, (hidden, memory) in zip(self.cells, state):
            hidden, memory = cell(x, (hidden.to(x.dtype), memory.to(x.dtype)))
            new_state.append((hidden, memory))
            x = hidden
        return self.output(x), new_state
