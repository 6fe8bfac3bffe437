"""The trigger rule (vidgen.models.dvg.trigger) against its formula on hand-made value sequences."""

from __future__ import annotations

import math

import numpy as np
import pytest

from vidgen.models.dvg.trigger import TriggerSpec, VarianceTrigger, every_fires, parse_trigger, window_threshold


def run(trigger: VarianceTrigger, values: list[float]) -> list[tuple[float | None, bool]]:
    decisions = [trigger.observe(v) for v in values]
    return [(d.threshold, d.fired) for d in decisions]


def test_the_threshold_is_mean_plus_2_01_population_stds_at_depth_1():
    values = [0.3, 1.2, 0.7, 0.9, 2.5, 0.1, 1.1, 0.4, 0.8, 1.9, 0.6, 1.0]
    assert window_threshold(values, 1) == pytest.approx(np.mean(values) + 2.01 * np.std(values), rel=1e-12)
    assert window_threshold(values, 3) == pytest.approx(np.mean(values) + 2.03 * np.std(values), rel=1e-12)
    # Eleven ones and a 5: mean 4/3, population variance 11/9.
    assert window_threshold([1.0] * 11 + [5.0], 1) == pytest.approx(4 / 3 + 2.01 * math.sqrt(11 / 9), rel=1e-12)


def test_a_flat_sequence_with_one_spike_fires_exactly_at_the_spike():
    trigger = VarianceTrigger(12)
    for _ in range(4):  # context frames fill the window but are never judged
        trigger.prime(1.0)
    decisions = run(trigger, [1.0] * 8 + [1.0, 1.0, 5.0, 1.0, 1.0])
    assert [fired for _, fired in decisions] == [False] * 10 + [True, False, False]
    assert all(threshold is None for threshold, _ in decisions[:8])  # filling the window
    assert decisions[8] == (pytest.approx(1.0), False)  # full: a flat window's threshold is its value
    assert decisions[10][0] == pytest.approx(4 / 3 + 2.01 * math.sqrt(11 / 9))  # the spike is in its own window
    assert trigger.depth == 2


def test_depth_grows_with_each_firing_and_raises_the_threshold():
    trigger = VarianceTrigger(12)
    for _ in range(12):
        trigger.prime(1.0)
    first = trigger.observe(5.0)
    assert first.fired and trigger.depth == 2
    for _ in range(11):  # the spike leaves the window
        assert not trigger.observe(1.0).fired
    second = trigger.observe(5.0)
    assert second.fired and trigger.depth == 3
    assert second.threshold == pytest.approx(4 / 3 + 2.02 * math.sqrt(11 / 9))  # depth 2 when judged
    # A single outlier in a flat window of 12 lies sqrt(11) = 3.32 stds above its mean: it fires while
    # 2 + 0.01 depth < 3.32, and no longer at depth 200 (4 stds).
    deep = VarianceTrigger(12, depth=200)
    for _ in range(12):
        deep.prime(1.0)
    assert not deep.observe(5.0).fired and deep.depth == 200


def test_nothing_fires_before_the_window_is_full():
    trigger = VarianceTrigger(12)
    trigger.prime(1.0)
    decisions = run(trigger, [1.0, 1.0, 100.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0])  # 12 values in all
    assert decisions == [(None, False)] * 11
    assert trigger.full and trigger.depth == 1


def test_a_window_of_five_cannot_fire_on_one_outlier():
    # With the value in its own window, one outlier's z-score is sqrt(window - 1) = 2 < 2.01.
    trigger = VarianceTrigger(5)
    for _ in range(5):
        trigger.prime(1.0)
    assert not trigger.observe(1e6).fired


def test_every_m_fires_at_every_mth_predicted_frame():
    assert [k for k in range(1, 13) if every_fires(k, 3)] == [3, 6, 9, 12]
    assert all(every_fires(k, 1) for k in range(1, 6))


@pytest.mark.parametrize("text, spec", [("gp", TriggerSpec("gp")), ("none", TriggerSpec("none")),
                                        ("every:1", TriggerSpec("every", 1)), ("every:15", TriggerSpec("every", 15))])
def test_trigger_strings(text, spec):
    assert parse_trigger(text) == spec


@pytest.mark.parametrize("text", ["every:0", "every:-2", "every:", "every", "every:x", "every:1.5", "GP", "always", ""])
def test_bad_trigger_strings(text):
    assert parse_trigger(text) is None
