"""DVG through the real entry point: K futures of a --context clip with the trigger's decisions in samples.json,
the one-line refusals (no context, a bad --trigger, a colour clip for a grayscale model), grayscale training, and
the prediction metrics of `vidgen eval` on a DVG run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import run_cli, set_args
from vidgen.core.io import read_video, write_mp4
from vidgen.models.registry import BACKENDS

TINY = list(BACKENDS["dvg"].test_overrides)  # 16 px, 4-frame clips, 2 context frames


def one_line_error(result) -> str:
    assert result.returncode != 0 and "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def train_tiny(out: Path, *extra: str, steps: int = 2) -> Path:
    run_cli("train", "dvg-tiny", "--out", str(out), "--max-steps", str(steps), "--device", "cpu",
            *set_args([*TINY, *extra]), check=True)
    return out


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Trained long enough (a second) that its frames are not yet flat gray."""
    return train_tiny(tmp_path_factory.mktemp("dvg") / "run", steps=40)


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Five 16 px frames of a red square moving right over black."""
    frames = np.zeros((5, 16, 16, 3), np.uint8)
    for t in range(5):
        frames[t, 5:10, 2 + t:7 + t, 0] = 230
    path = tmp_path_factory.mktemp("clip") / "clip.mp4"
    write_mp4(path, frames, fps=8)
    return path


def test_k_futures_of_one_clip_with_the_trigger_decisions_per_frame(run, clip, tmp_path):
    out = tmp_path / "s"
    run_cli("sample", str(run), "--out", str(out), "--context", str(clip), "--num", "3", "--frames", "8",
            "--trigger", "every:2", "--device", "cpu", check=True)
    manifest = json.loads((out / "samples.json").read_text())
    assert manifest["options"]["trigger"] == "every:2" and len(manifest["predictions"]) == 3
    for video in manifest["predictions"]:  # frames 2..7 are predicted (2 context frames)
        assert video["trigger"] == "every:2"
        assert [f["frame"] for f in video["frames"]] == [2, 3, 4, 5, 6, 7]
        assert [f["fired"] for f in video["frames"]] == [False, True, False, True, False, True]
        assert all((f["gp_variance"] is not None) == f["fired"] for f in video["frames"])
    given = read_video(clip)[:2].astype(int)
    videos = [read_video(out / f"sample-{seed:06d}.mp4").astype(int) for seed in range(3)]
    for video in videos:
        assert video.shape == (8, 16, 16, 3)
        assert np.abs(video[:2] - given).mean() < 4, "each future starts with the two given frames"
    assert np.abs(videos[0][2:] - videos[1][2:]).max() > 0, "seeds 0 and 1 give different futures"


def test_the_gp_rule_records_a_variance_and_a_threshold_per_frame(run, clip, tmp_path):
    run_cli("sample", str(run), "--out", str(tmp_path / "s"), "--context", str(clip), "--num", "1", "--frames",
            "20", "--trigger-window", "4", "--device", "cpu", check=True)
    frames = json.loads((tmp_path / "s" / "samples.json").read_text())["predictions"][0]["frames"]
    assert len(frames) == 18 and all(f["gp_variance"] > 0 for f in frames)
    assert all(f["threshold"] is not None for f in frames[3:]), "the window of 4 is full from the third new frame"


@pytest.mark.parametrize("args, message", [
    ([], "a DVG model predicts the future of given frames; give --context clip.mp4"),
    (["--context", "CLIP", "--trigger", "every:0"], "sample.trigger (--trigger)"),
    (["--context", "CLIP", "--trigger", "sometimes"], "sample.trigger (--trigger)"),
    (["--context", "CLIP", "--num", "0"], "sample.num (--num) must be > 0"),
    (["--context", "CLIP", "--context-frames", "6", "--frames", "10"], "has 5 frames, fewer than the 6 context frames"),
])
def test_bad_sampling_input_is_one_line(run, clip, tmp_path, args, message):
    args = [str(clip) if arg == "CLIP" else arg for arg in args]
    result = run_cli("sample", str(run), "--out", str(tmp_path / "s"), "--device", "cpu", *args)
    assert message in one_line_error(result)


def test_a_grayscale_model_predicts_gray_clips_and_refuses_colour_ones(clip, tmp_path):
    run = train_tiny(tmp_path / "gray", "data.channels=1")
    result = run_cli("sample", str(run), "--out", str(tmp_path / "c"), "--device", "cpu", "--context", str(clip))
    assert "is in colour but the model takes grayscale video (data.channels 1)" in one_line_error(result)
    gray = np.repeat(read_video(clip)[..., :1], 3, axis=-1)
    write_mp4(tmp_path / "gray.mp4", gray, fps=8)
    run_cli("sample", str(run), "--out", str(tmp_path / "g"), "--device", "cpu", "--context",
            str(tmp_path / "gray.mp4"), "--num", "2", check=True)
    video = read_video(tmp_path / "g" / "sample-000000.mp4")  # gray, written as RGB
    assert np.abs(video[..., 0].astype(int) - video[..., 2]).max() <= 2


def test_eval_scores_a_dvg_run_with_the_prediction_metrics(run, tmp_path):
    result = run_cli("eval", "--real", "synthetic:videos=3,frames=8,resolution=16,action_changes=true",
                     "--fake", str(run), "--metrics", "pred_ssim_c2_n4_best3,pred_psnr_c2_n4_best3,pred_div_c2_n4_k3",
                     "--num", "3", "--json", str(tmp_path / "scores.json"), "--plot", str(tmp_path / "curves.png"),
                     "--device", "cpu", "--workers", "0")
    assert result.returncode == 0, result.stderr
    scores = json.loads((tmp_path / "scores.json").read_text())["metrics"]
    assert len(scores["pred_ssim_c2_n4_best3"]["curve"]) == 4
    assert scores["pred_div_c2_n4_k3"]["value"] > 0, "the first predicted frame is a GP draw: futures differ"
    assert (tmp_path / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    unconditional = run_cli("eval", "--real", "synthetic", "--fake", str(run), "--metrics", "fvd2048_16f",
                            "--allow-fewer", "--num", "2", "--device", "cpu")
    assert "pred_" in one_line_error(unconditional)
