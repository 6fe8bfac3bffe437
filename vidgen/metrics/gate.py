"""The CI gate: `--fail-above metric=value` thresholds, checked against the scores (lower is better for
every metric here). No torch import, so usage errors are reported before anything heavy loads."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from vidgen.errors import ConfigError
from vidgen.metrics.protocols import Protocol, get_protocols


def parse_thresholds(items: Sequence[str], metrics: str | Sequence[str | Protocol]) -> dict[str, float]:
    """`name=value` items into {name: value}. A malformed item, an unknown metric, or a metric that is not
    among those asked for is a ConfigError (a usage error: exit code 2)."""
    return parse_threshold_items(items, [p.name for p in get_protocols(metrics)], example="fvd2048_16f=300")


def parse_threshold_items(items: Sequence[str], names: Sequence[str], example: str) -> dict[str, float]:
    """`name=value` items into {name: value}, each name among `names` (the metrics asked for); `example` shows
    the form in the error of a malformed item."""
    thresholds = {}
    for item in items:
        name, sep, text = item.partition("=")
        name = name.strip()
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not sep or not math.isfinite(value):
            raise ConfigError(f"--fail-above '{item}' must look like metric=number, e.g. {example}")
        if name not in names:
            raise ConfigError(f"--fail-above names '{name}', which is not among the metrics asked for "
                              f"({', '.join(names)}); add it to --metrics or drop the threshold")
        thresholds[name] = value
    return thresholds


def exceeded(values: Mapping[str, float], thresholds: Mapping[str, float]) -> list[tuple[str, float, float]]:
    """(name, value, threshold) of every score above its threshold; a NaN score counts as above."""
    return [(name, values[name], limit) for name, limit in thresholds.items() if not values[name] <= limit]
