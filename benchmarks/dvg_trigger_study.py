"""Where does DVG's GP trigger fire? A measurement on a trained DVG run over synthetic scenes with action changes.

    python benchmarks/dvg_trigger_study.py runs/dvg-tiny [--videos 32] [--futures 8] [--frames 40]

Scenes come from the run's own synthetic style (data.synthetic_action_changes: one shape that moves straight,
bounces off the walls, and once, at a time uniform over the middle half of the video, turns or starts to spin), but
from seeds the run never trained on, so each change time is known. Two questions, two tables:

1. Does the trigger detect the data's action changes? Over each real video, frame by frame: the GP's predictive
   variance at the frame's latent (the trigger's value), the variance rule run along the video, and how often its
   firings fall within 2 frames of the change, against the share of frames that lie that close (chance).
2. Do its futures change action where it fires? K futures of each video's first c frames, with --trigger gp and
   with --trigger none (the same seeds); the shape is tracked in every generated frame (its centroid), and the
   shape changes heading at frame t when its mean step over the 3 steps into frame t - 1 and over the 3 steps out
   of frame t differ by more than 60 degrees (both at least 0.25 px a frame; the step into t is left out, so that
   a jump is not read as a turn). How often that happens at firing frames, at other frames and without the
   trigger; and how far the shape jumps into a firing frame (a draw off the data shows as a jump).
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np
import torch

from vidgen.core.synthetic import make_scene, render_scene, video_seed
from vidgen.models.dvg.backend import variance_norms
from vidgen.models.dvg.trigger import VarianceTrigger
from vidgen.sample import load_for_sampling

UNSEEN_SEED = 1_000_003
"""Scenes from this run seed: the trained run used its own (recipe.run.seed) and never saw these."""
NEAR = 2
"""Frames either side of a change that count as near it (question 1)."""
TURN_DEGREES, TURN_WINDOW, MIN_SPEED = 60.0, 3, 0.25


def real_videos(recipe, count: int, frames: int) -> tuple[torch.Tensor, list[int]]:
    """count unseen scenes as videos [N, C, T, H, W] in [-1, 1] and the frame index of each one's action change."""
    data = recipe.data
    style = data.synthetic_style
    times = np.arange(frames) / data.fps
    videos, changes = [], []
    for index in range(count):
        scene = make_scene(video_seed(UNSEEN_SEED, index), style)
        pixels = render_scene(scene, times, data.resolution)  # uint8 [T, H, W, 3]
        videos.append(torch.from_numpy(pixels).permute(3, 0, 1, 2).float() / 127.5 - 1)
        changes.append(int(round(scene.shapes[0].change_time * data.fps)))
    return torch.stack(videos), changes


def near_share(events: np.ndarray, marks: np.ndarray, before: int, after: int) -> tuple[float, float]:
    """(share of events with a mark within [-before, +after] frames, share of all frames that are so near a
    mark); events and marks are boolean [N, T]."""
    near = np.zeros_like(marks)
    for shift in range(-after, before + 1):  # frame t is near a mark at t - after .. t + before
        shifted = np.roll(marks, shift, axis=1)
        if shift > 0:
            shifted[:, :shift] = False
        elif shift < 0:
            shifted[:, shift:] = False
        near |= shifted
    hits = (events & near).sum() / max(events.sum(), 1)
    return float(hits), float(near.mean())


def detection_table(backend, videos: torch.Tensor, changes: list[int]) -> list[tuple[str, str]]:
    """Question 1, on real videos."""
    nets, c = backend.networks, backend.context_frames()
    n, _, frames = videos.shape[:3]
    with torch.no_grad():
        h, _ = nets["encoder"](((videos + 1) / 2).permute(0, 2, 1, 3, 4).flatten(0, 1))
        h = h.float()
        variance = nets["gp"].predictive(h)[1]
        # The LSTM's error on the next latent, frame t -> t + 1 (given the true latents up to t): the surprise.
        latents, state = h.view(n, frames, -1), nets["predictor"].initial_state(n, torch.device("cpu"))
        surprise = np.full((n, frames), np.nan)
        for t in range(frames - 1):
            predicted, state = nets["predictor"](latents[:, t], state)
            surprise[:, t + 1] = (predicted.float() - latents[:, t + 1]).square().mean(dim=1).numpy()
    values = np.asarray(variance_norms(variance)).reshape(n, frames)
    fired = np.zeros((n, frames), bool)
    for i in range(n):
        trigger = VarianceTrigger(backend.recipe.sample.trigger_window)
        for t in range(frames):
            if trigger.full:
                fired[i, t] = trigger.observe(values[i, t]).fired
            else:
                trigger.prime(values[i, t])
    at_change = np.zeros((n, frames), bool)
    for i, t in enumerate(changes):
        at_change[i, t] = True
    ratio = values[at_change].mean() / values[~at_change].mean()
    after = np.roll(at_change, 1, axis=1)  # the frame after the change: the first whose latent shows it
    surprise_ratio = np.nanmean(surprise[after]) / np.nanmean(surprise[~after & (np.arange(frames) > 0)])
    hits, chance = near_share(fired, at_change, NEAR, NEAR)
    return [("videos x frames", f"{n} x {frames} (change frames {min(changes)}-{max(changes)}; context c = {c})"),
            ("LSTM's next-latent error after the change / elsewhere", f"{surprise_ratio:.2f}"),
            ("GP variance at the change / elsewhere", f"{ratio:.3f}"),
            ("frames where the rule fires", f"{fired.mean():.1%}"),
            (f"firings within {NEAR} frames of the change", f"{hits:.1%} (chance {chance:.1%})")]


def shape_masks(videos: np.ndarray) -> np.ndarray:
    """Pixels of the shape, boolean [N, T, H, W]: far from the frame's median colour (videos [N, T, H, W, 3] in
    [0, 1])."""
    background = np.median(videos.reshape(*videos.shape[:2], -1, 3), axis=2)[:, :, None, None, :]
    return np.abs(videos - background).sum(axis=-1) > 0.5


def centroids(mask: np.ndarray) -> np.ndarray:
    """The shape's centroid per frame, [N, T, 2] in pixels."""
    ys, xs = np.mgrid[:mask.shape[2], :mask.shape[3]]
    weight = np.maximum(mask.sum(axis=(2, 3)), 1)
    return np.stack([(mask * xs).sum(axis=(2, 3)) / weight, (mask * ys).sum(axis=(2, 3)) / weight], axis=-1)


def heading_changes(centres: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per frame t (boolean [N, T]): the shape's heading over the 3 steps into frame t - 1 and over the 3 steps out
    of frame t differs by more than TURN_DEGREES (both moving at least MIN_SPEED px a frame). The step t - 1 -> t
    itself is left out, so a jump at t is not read as a turn. Also the step length |c_t - c_{t-1}| [N, T]."""
    steps = np.diff(centres, axis=1)  # [N, T - 1, 2]: index j is the step j -> j + 1
    n, frames = centres.shape[:2]
    changed = np.zeros((n, frames), bool)
    for t in range(TURN_WINDOW + 1, frames - TURN_WINDOW):
        before, after = steps[:, t - 1 - TURN_WINDOW:t - 1].mean(axis=1), steps[:, t:t + TURN_WINDOW].mean(axis=1)
        norm_b, norm_a = np.linalg.norm(before, axis=1), np.linalg.norm(after, axis=1)
        cosine = (before * after).sum(axis=1) / np.maximum(norm_b * norm_a, 1e-9)
        moving = (norm_b > MIN_SPEED) & (norm_a > MIN_SPEED)
        changed[:, t] = moving & (cosine < math.cos(math.radians(TURN_DEGREES)))
    jump = np.zeros((n, frames))
    jump[:, 1:] = np.linalg.norm(steps, axis=2)
    return changed, jump


def sample_table(backend, videos: torch.Tensor, futures: int, frames: int) -> list[tuple[str, str]]:
    """Question 2, on the model's futures."""
    c = backend.context_frames()
    context = videos[:, :, :c].repeat_interleave(futures, dim=0)  # video i's context K times
    seeds = list(range(context.shape[0]))
    results = {}
    for trigger in ("gp", "none"):
        options = backend.recipe.sample_options(trigger=trigger)
        with torch.no_grad():
            prediction = backend.predict(backend.networks, context, seeds, frames, torch.device("cpu"), options)
        pixels = ((prediction.videos.clamp(-1, 1) + 1) / 2).permute(0, 2, 3, 4, 1).numpy()  # [N, T, H, W, 3]
        mask = shape_masks(pixels)
        changed, jump = heading_changes(centroids(mask))
        fired = np.zeros_like(changed)
        for i, detail in enumerate(prediction.details):
            for record in detail["frames"]:
                fired[i, record["frame"]] = record["fired"]
        fired[:, c] = False  # the first predicted frame is a draw by construction
        judged = np.zeros_like(changed)  # frames whose windows lie in the future (after the first predicted one)
        judged[:, c + TURN_WINDOW + 1:frames - TURN_WINDOW] = True
        results[trigger] = (changed, jump, fired, judged, mask.sum(axis=(2, 3))[:, c:])
    changed, jump, fired, judged, area = results["gp"]
    none_changed, _, _, none_judged, none_area = results["none"]
    real_mask = shape_masks(((videos + 1) / 2).permute(0, 2, 3, 4, 1).numpy())
    real_changed, real_jump = heading_changes(centroids(real_mask))
    real_area = real_mask.sum(axis=(2, 3))
    # A frame shows the shape when it covers at least a fifth of a real frame's median area.
    present = 0.2 * float(np.median(real_area))
    real = real_changed[:, TURN_WINDOW + 1:-TURN_WINDOW]  # bounces off the walls and the one action change
    at, other = fired & judged, ~fired & judged
    return [("futures x predicted frames", f"{changed.shape[0]} x {frames - c} ({futures} per context)"),
            ("predicted frames showing the shape: gp / none / real",
             f"{(area >= present).mean():.1%} / {(none_area >= present).mean():.1%} / "
             f"{(real_area >= present).mean():.1%}"),
            ("frames where gp fires (after the first)", f"{fired[:, c + 1:].mean():.1%}"),
            (f"heading change > {TURN_DEGREES:.0f} deg across the frame: gp firing / gp other / none / real",
             f"{changed[at].mean():.1%} / {changed[other].mean():.1%} / {none_changed[none_judged].mean():.1%} / "
             f"{real.mean():.1%}"),
            ("step into the frame: gp firing / gp other / real",
             f"{jump[at].mean():.2f} / {jump[other].mean():.2f} / {real_jump[:, 1:].mean():.2f} px")]


def print_table(title: str, rows: list[tuple[str, str]]) -> None:
    width = max(len(k) for k, _ in rows)
    print(f"\n{title}\n" + "\n".join(f"  {k.ljust(width)}  {v}" for k, v in rows))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="a trained DVG run (or export) on synthetic action-change data")
    parser.add_argument("--videos", type=int, default=32)
    parser.add_argument("--futures", type=int, default=8)
    parser.add_argument("--frames", type=int, default=40, help="frames per future, context included")
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    recipe, backend = load_for_sampling(args.run, torch.device("cpu"))
    if recipe.model.name != "dvg" or not recipe.data.synthetic_action_changes:
        raise SystemExit(f"{args.run} is not a DVG run on synthetic action-change data")
    frames = recipe.data.synthetic_frames
    videos, changes = real_videos(recipe, args.videos, frames)
    print(f"DVG trigger study: {args.run} ({recipe.run.name}), scenes of {frames} frames at "
          f"{recipe.data.resolution}x{recipe.data.resolution}, trigger window {recipe.sample.trigger_window}")
    print_table("1. Does the rule detect the data's action changes? (real videos)",
                detection_table(backend, videos, changes))
    print_table("2. Do its futures turn where it fires? (generated videos)",
                sample_table(backend, videos, args.futures, args.frames))


if __name__ == "__main__":
    main()
