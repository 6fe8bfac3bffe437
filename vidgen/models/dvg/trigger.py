"""The trigger of DVG (Shrivastava & Shrivastava, "Diverse Video Generation using a Gaussian Process Trigger",
ICLR 2021): when to stop following the LSTM and draw a new future from the GP instead.

The value of a frame is the GP's uncertainty about it: the L2 norm over the latent dimensions of the GP's
predictive variance (likelihood noise included) at the previous frame's latent. A large value means the GP sees
several plausible futures from here, i.e. an action may change, and the paper then samples one of them.

The rule ("gp") follows the released code: a window holds the last `window` values (context frames included);
once it is full, each new value replaces the oldest one and the trigger fires when

    value > mean(window) + (2 + 0.01 * depth) * std(window)        (population std, as numpy's np.std)

with the new value already in the window. `depth` starts at 1 and grows by 1 each time the trigger fires, the
paper's recursion depth, which makes every further trigger harder. The released code never increments it (its
threshold stays at mean + 2.01 std); vidgen follows the paper here.

Note: with the new value in the window, a single outlier among `window` equal values has a z-score of
sqrt(window - 1), so a window smaller than 6 can never fire at depth 1.

Pure Python, no torch: config.py parses the --trigger string with it, and recipes load without torch.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import Literal

TriggerKind = Literal["gp", "none", "every"]

DEPTH_STEP = 0.01
"""How much each level of the paper's recursion depth raises the threshold, in standard deviations."""
BASE_STDS = 2.0
"""The threshold at depth 0, in standard deviations above the window's mean (the released code)."""


@dataclass(frozen=True)
class TriggerSpec:
    """A parsed --trigger value."""

    kind: TriggerKind
    """gp: the variance rule; none: never (the LSTM alone); every: every `every`-th predicted frame."""
    every: int | None = None
    """kind "every" only: fire at predicted frames every, 2 x every, ... (counted from 1 after the context)."""


def parse_trigger(text: str) -> TriggerSpec | None:
    """"gp", "none" or "every:M" with an integer M >= 1 as a TriggerSpec; None for anything else."""
    if text in ("gp", "none"):
        return TriggerSpec(text)
    kind, sep, count = text.partition(":")
    if kind == "every" and sep and count.strip().isdigit() and int(count) >= 1:
        return TriggerSpec("every", int(count))
    return None


@dataclass(frozen=True)
class Decision:
    """What the trigger made of one predicted frame's value."""

    threshold: float | None
    """mean + (2 + 0.01 depth) std of the window, or None while the window is not yet full."""
    fired: bool


class VarianceTrigger:
    """The "gp" rule over one video's sequence of values (module docstring). Stateful: one per video."""

    def __init__(self, window: int, depth: int = 1) -> None:
        if window < 2:
            raise ValueError(f"the trigger window needs at least 2 values, got {window}")
        self.size = window
        self.values: deque[float] = deque(maxlen=window)
        self.depth = depth
        """The paper's recursion depth: 1 at the start, +1 per firing."""

    @property
    def full(self) -> bool:
        return len(self.values) == self.size

    def prime(self, value: float) -> None:
        """A context frame's value: it fills the window but is never judged (the frame is given)."""
        self.values.append(float(value))

    def observe(self, value: float) -> Decision:
        """A predicted frame's value: judged against the window once the window is full."""
        value = float(value)
        if not self.full:
            self.values.append(value)
            return Decision(None, False)
        self.values.append(value)  # the deque drops the oldest
        threshold = window_threshold(list(self.values), self.depth)
        fired = value > threshold
        if fired:
            self.depth += 1
        return Decision(threshold, fired)


def window_threshold(values: list[float], depth: int) -> float:
    """mean(values) + (2 + 0.01 depth) * std(values), std with ddof 0 (the released code's np.std)."""
    mean = math.fsum(values) / len(values)
    std = math.sqrt(math.fsum((v - mean) ** 2 for v in values) / len(values))
    return mean + (BASE_STDS + DEPTH_STEP * depth) * std


def every_fires(predicted_index: int, every: int) -> bool:
    """"every:M": whether predicted frame `predicted_index` (1 = the first frame after the context) fires."""
    return predicted_index % every == 0
