import math

import pytest
import torch

from vidgen.core.ema import ema_decay, make_ema, update_ema


@pytest.mark.parametrize("halflife, per_step", [(1000.0, 8), (500.0, 64), (10.0, 1)])
def test_decay_halves_the_weight_over_one_halflife(halflife, per_step):
    beta = ema_decay(halflife, per_step, videos_seen=10**9)
    assert beta ** (halflife / per_step) == pytest.approx(0.5, rel=1e-12)


def test_rampup_caps_the_halflife_early():
    early = ema_decay(10_000, 8, videos_seen=80, rampup=0.1)  # half-life capped at 8 videos
    assert early == pytest.approx(0.5)
    assert ema_decay(10_000, 8, videos_seen=10**9, rampup=0.1) == ema_decay(10_000, 8, 10**9)


def test_update_matches_closed_form():
    net = torch.nn.Linear(3, 2)
    ema = make_ema(net)
    start = [p.detach().clone() for p in ema.parameters()]
    with torch.no_grad():
        for p in net.parameters():
            p.add_(1.0)
    update_ema(ema, net, decay=0.9)
    for e, s, p in zip(ema.parameters(), start, net.parameters()):
        torch.testing.assert_close(e, 0.9 * s + 0.1 * p.detach())
    assert not any(p.requires_grad for p in ema.parameters())
    assert math.isclose(ema_decay(1.0, 1, 1), 0.5)
