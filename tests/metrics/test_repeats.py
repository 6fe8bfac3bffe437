"""Evaluation that reports its spread (--repeats) and the real-versus-real floor (--split-halves), on tiny
synthetic sets: 2 clips per side (fvd2048_16f at --num 2), since I3D on a CPU costs seconds per clip."""

from __future__ import annotations

import json
import shutil
import statistics

import pytest

from tests.conftest import run_cli
from vidgen.core.config import DataConfig
from vidgen.errors import UserError
from vidgen.evaluate import (DatasetHalf, EvalResult, evaluate, evaluate_repeats, halves, parse_real, real_videos,
                             split_halves)
from vidgen.metrics.gate import exceeded
from vidgen.metrics.protocols import Protocol
from vidgen.metrics.sources import SyntheticSpec

from .conftest import write_videos

# Four 18-frame videos: halves of two, and 16-frame clips whose offsets (0..2) change with the seed.
DATA = "synthetic:videos=4,frames=18,resolution=32,fps=8,max_shapes=1,colours=1,textured=false,seed=0"
FVD = "fvd2048_16f"
SMALL = dict(num_fake=2, allow_fewer=True)  # 2 clips per half, as `--num 2 --allow-fewer`
OLD_KEYS = {"value", "label", "num_real", "num_fake", "real_stats", "detector", "protocol"}


@pytest.fixture(scope="module")
def draws(tmp_path_factory, detector_dir) -> tuple[dict, EvalResult, list[EvalResult]]:
    """The floor of DATA over 2 draws, and evaluate() run by hand with each draw's seed; real statistics cached
    under home/stats (VIDGEN_HOME=home for the CLI)."""
    home = tmp_path_factory.mktemp("repeats") / "home"
    kwargs = dict(device="cpu", detector_dir=detector_dir, cache_dir=home / "stats", workers=0, **SMALL)
    repeated = evaluate_repeats(*split_halves(DATA), [FVD], repeats=2, **kwargs)
    by_hand = [evaluate(DatasetHalf(DATA, 0), DatasetHalf(DATA, 1), [FVD], seed=seed, **kwargs)
               for seed in repeated.seeds]
    return {"VIDGEN_HOME": str(home), **kwargs}, repeated, by_hand


def test_mean_and_std_are_those_of_evaluate_run_by_hand(draws):
    _, repeated, by_hand = draws
    assert repeated.seeds == (0, 2)  # seed + r·N with N = 2 fake videos: draws share no sample seed
    values = [result[FVD].value for result in by_hand]
    metric = repeated[FVD]
    assert metric.draws == pytest.approx(values, rel=1e-9)
    assert metric.value == pytest.approx(statistics.fmean(values), rel=1e-9)
    assert metric.std == pytest.approx(statistics.stdev(values), rel=1e-9) and metric.std > 0
    assert metric.real_stats == "computed" and {r[FVD].real_stats for r in by_hand} == {"cache"}
    assert metric.label == "fvd2048_16f (n=2)" and (metric.num_real, metric.num_fake) == (2, 2)

    data = repeated.to_json()
    entry = data["metrics"][FVD]
    assert set(entry) == OLD_KEYS | {"std", "values", "repeats"} and entry["repeats"] == 2
    assert entry["value"] == metric.value and entry["values"] == list(metric.draws)
    assert data["seed"] == 0 and data["seeds"] == [0, 2]


def test_one_repeat_is_todays_result(draws):
    env, _, by_hand = draws
    kwargs = {key: value for key, value in env.items() if key != "VIDGEN_HOME"}
    once = evaluate_repeats(*split_halves(DATA), [FVD], repeats=1, **kwargs)
    assert once.to_json() == by_hand[0].to_json()
    assert set(once.to_json()["metrics"][FVD]) == OLD_KEYS and "seeds" not in once.to_json()
    with pytest.raises(UserError, match=r"--repeats must be >= 1"):
        evaluate_repeats(DATA, DATA, [FVD], repeats=0, **kwargs)


def test_the_gate_compares_the_mean(draws, detector_dir, tmp_path):
    env, repeated, _ = draws
    metric = repeated[FVD]
    low, high = min(metric.draws), max(metric.draws)
    assert low < metric.value < high
    assert [name for name, _, _ in exceeded(repeated.values(), {FVD: (low + metric.value) / 2})] == [FVD]
    # Through the CLI, the same draws (the real side from the cache): a limit above the mean, below one draw, holds.
    out = tmp_path / "result.json"
    limit = (metric.value + high) / 2
    result = _eval("--real", DATA, "--fake", DATA, "--split-halves", "--num", "2", "--allow-fewer", "--repeats",
                   "2", "--detector-dir", str(detector_dir), "--json", str(out), "--fail-above", f"{FVD}={limit}",
                   env={"VIDGEN_HOME": env["VIDGEN_HOME"]})
    assert result.returncode == 0, result.stderr
    data = json.loads(out.read_text())
    entry = data["metrics"][FVD]
    assert entry["repeats"] == 2 and entry["values"] == pytest.approx(list(metric.draws), rel=1e-9)
    assert entry["value"] == pytest.approx(metric.value, rel=1e-9) and entry["real_stats"] == "cache"
    assert data["passed"] is True and data["real"].endswith("[even half]") and data["fake"].endswith("[odd half]")
    assert f"{metric.value:.4f} ± {metric.std:.4f}" in result.stdout


def test_halves_are_disjoint_and_cover_the_data():
    even, odd = halves(list(range(7)))
    assert even == [0, 2, 4, 6] and odd == [1, 3, 5] and not set(even) & set(odd)
    data = "synthetic:videos=5,frames=4"
    every = [v.name for v in real_videos(data, parse_real(data, SyntheticSpec.from_data(DataConfig(), 0)), print)]
    even, odd = ([v.name for v in half.videos(print)] for half in split_halves(data))
    assert even == every[0::2] and odd == every[1::2] and len(set(every)) == 5


def test_identical_halves_give_a_floor_of_zero(tmp_path, detector_dir):
    fvd = Protocol("fvd2_9f", "i3d", "frechet", 2, 9)
    # 000, 000_copy, 001, 001_copy sorted: the even half (000, 001) and the odd half are the same videos, each one
    # clip long (so every offset is 0).
    folder = tmp_path / "data"
    for path in write_videos(folder, num=2, frames=9):
        shutil.copy(path, path.with_name(path.stem + "_copy.mp4"))
    result = evaluate_repeats(*split_halves(folder), [fvd], device="cpu", detector_dir=detector_dir,
                              cache_dir=tmp_path / "stats", workers=0)
    assert abs(result[fvd.name].value) < 0.5 and result[fvd.name].num_real == result[fvd.name].num_fake == 2


def _eval(*args, env=None):
    return run_cli("eval", *args, "--device", "cpu", "--workers", "0", env=env)


def test_cli_errors_are_one_line(tmp_path):
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    cases = [
        (["--real", DATA, "--fake", DATA, "--repeats", "0"], 2, "--repeats must be >= 1 (the number of draws), got 0"),
        (["--real", DATA, "--fake", str(tmp_path), "--split-halves"], 2, "give the same --real and --fake"),
        (["--real", str(run), "--fake", str(run), "--split-halves"], 2, "is a run, give the dataset"),
        (["--real", DATA, "--fake", DATA, "--split-halves"], 1,
         "fvd2048_16f needs 2048 videos, FAKE 'synthetic:videos=4"),  # 2 per half, without --allow-fewer
    ]
    for args, code, message in cases:
        result = _eval(*args)
        assert result.returncode == code, result.stderr
        assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "[odd half]' has 2 long enough" in result.stderr
