"""Official StyleGAN-V snapshots (universome/stylegan-v network-snapshot-*.pkl) as vidgen StyleGAN-V weights.

The snapshot is read as data (official_pickle.py: nothing in it runs). Its settings give the recipe — widths,
motion settings, fp16 resolutions, conv clamp, clip length — and its tensors are renamed onto vidgen's networks:

    official (src/training/networks.py, layers.py, motion.py)     vidgen (generator.py, discriminator.py)
    mapping.fc{i}                                                  G.mapping.layers.{i}
    synthesis.motion_encoder.conv.{0,1}                            G.motion.mapping.conv{0,1}
    synthesis.motion_encoder.time_encoder.{periods,phase,aligners}_predictor
                                                                   G.motion.encoding.{period,phase}_predictor, aligner
    synthesis.b4.input.input.const [1, C, 4, 4]                    G.synthesis.blocks.0.const [C, 4, 4]
    synthesis.b{r}.{conv0,conv1,torgb}                             G.synthesis.blocks.{log2 r - 2}.*
    b{R}.fromrgb, b{r}.{conv0,conv1,skip}                          D.fromrgb, D.frame_blocks.{i} / D.joint_blocks.{j}
    time_encoder.const_embed                                       D.time_encoder.embedding
    mapping.{embed,fc{i}}                                          D.mapping.{embed,layers.{i}}
    b4.{conv,fc,out}                                               D.epilogue.{conv,fc,out}

One tensor changes: the official up-sampling convolutions (conv0 of every synthesis block above 4x4) run as true
convolutions (`flip_weight = (self.up == 1)` in its SynthesisLayer: a transposed convolution with the kernel as
stored), while vidgen's conv2d_resample treats every kernel as a correlation kernel, as F.conv2d does; those
kernels are flipped in both spatial axes. The constants the official networks keep as buffers (resampling
filters, the positional encoding's frequencies and phase scales, D's gap frequencies) are recomputed by vidgen
from the recipe, and must equal the snapshot's: a check that its settings were read right.
"""

from __future__ import annotations

import math
import pickle
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from vidgen.errors import UserError
from vidgen.models.base import OfficialImport
from vidgen.models.stylegan_v.official_pickle import (OmegaConfView, Persistent, UnsafePickle, module_state,
                                                      parameter_count, read_snapshot, state_dict, submodule)


@dataclass(frozen=True)
class Rename:
    """Where one official tensor goes in a vidgen network, and how it changes on the way."""

    target: str
    transform: Callable[[torch.Tensor], torch.Tensor] | None = None


def flip_kernel(weight: torch.Tensor) -> torch.Tensor:
    """A true-convolution kernel [O, I, k, k] as the correlation kernel that computes the same thing."""
    return weight.flip([2, 3])


def import_stylegan_v(path: Path) -> OfficialImport:
    """Read an official StyleGAN-V snapshot and return vidgen's recipe and sampling weights for it."""
    from vidgen.models.stylegan_v.config import StyleGANVConfig
    from vidgen.models.stylegan_v.discriminator import Discriminator
    from vidgen.models.stylegan_v.generator import Generator

    snapshot = _read(path)
    cfg = _generator_config(path, snapshot["G_ema"])
    try:
        recipe = derive_recipe(path, snapshot, cfg)
    except (TypeError, ValueError) as exc:  # a setting missing, null or of another type; a dangling interpolation
        raise UserError(f"{path}: its network settings could not be read ({exc}); it is not a StyleGAN-V "
                        "snapshot vidgen knows") from None
    model_cfg = StyleGANVConfig(**{k: v for k, v in recipe["model"].items() if k != "name"})
    resolution = recipe["data"]["resolution"]
    generator, discriminator = Generator(model_cfg, resolution), Discriminator(model_cfg, resolution)
    g_renames = generator_renames(model_cfg, resolution)

    # The export keeps the sampling weights: the EMA generator and the discriminator. The training generator
    # is converted too, as a check of the snapshot, and left out.
    g_ema, g_ema_row = convert_network(path, "G_ema", snapshot["G_ema"], generator, g_renames)
    d, d_row = convert_network(path, "D", snapshot["D"], discriminator,
                               discriminator_renames(model_cfg, resolution))
    rows = [g_ema_row, d_row]
    if isinstance(snapshot.get("G"), Persistent):
        rows.insert(1, convert_network(path, "G", snapshot["G"], generator, g_renames)[1])
    kimg = _kimg(path)
    rows += [("training kimg", f"{kimg:,}" if kimg is not None else "not in the file name"),
             ("training data", str(_training_set(snapshot).get("path", "not recorded")))]
    weights = {**{f"G.{k}": v for k, v in g_ema.items()}, **{f"D.{k}": v for k, v in d.items()}}
    return OfficialImport(recipe=recipe, networks=weights,
                          backend_state={"augment_p": _augment_p(snapshot.get("augment_pipe")), "pl_mean": 0.0},
                          description="official StyleGAN-V snapshot (universome/stylegan-v)", details=rows)


def convert_network(path: Path, name: str, official: Persistent, target: torch.nn.Module,
                    renames: dict[str, Rename]) -> tuple[dict[str, torch.Tensor], tuple[str, str]]:
    """One official network as `target`'s state dict, and a model-card row comparing parameter counts."""
    try:
        tensors = state_dict(official)
    except ValueError as exc:
        raise UserError(f"{path}: {name} is not laid out as a network ({exc}); the snapshot is damaged") from None
    converted = convert(path, name, tensors, target, renames)
    theirs, ours = parameter_count(official), sum(p.numel() for p in target.parameters())
    if theirs != ours:
        raise UserError(f"{path}: {name} has {theirs:,} parameters but vidgen's network for its settings has "
                        f"{ours:,}; it is a StyleGAN-V variant vidgen does not implement")
    return converted, (f"{name} parameters", f"{theirs:,} (official) = {ours:,} (vidgen)")


# ----------------------------------------------------------------------------------------------------------
# Reading and recognising the snapshot


def _read(path: Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as f:
            head = f.read(4)
    except OSError as exc:
        raise UserError(f"cannot read {path}: {exc.strerror or exc}") from None
    if head.startswith(b"PK"):
        raise UserError(f"{path} is a zip archive (a torch.save checkpoint?), not a StyleGAN-V network pickle "
                        "(network-snapshot-*.pkl)")
    try:
        snapshot = read_snapshot(path)
    except UnsafePickle as exc:
        raise UserError(f"{path} would run code when loaded (it calls {exc.qualified_name}); vidgen reads only "
                        "tensors and network settings from a snapshot and refused it, running nothing") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, IndexError, KeyError, AttributeError,
            RuntimeError, UnicodeDecodeError, OverflowError) as exc:
        first = str(exc).strip().splitlines()[0][:120] if str(exc).strip() else type(exc).__name__
        raise UserError(f"{path} is not a pickle, or is damaged ({first}); give a network-snapshot-*.pkl "
                        "written by StyleGAN-V's training") from None
    if not isinstance(snapshot, dict) or not all(isinstance(snapshot.get(k), Persistent) for k in ("G_ema", "D")):
        held = ", ".join(map(str, snapshot)) if isinstance(snapshot, dict) else type(snapshot).__name__
        raise UserError(f"{path} is not a StyleGAN-V network snapshot (it holds {held}; a snapshot holds G, D, "
                        "G_ema and augment_pipe)")
    return snapshot


def _generator_config(path: Path, g_ema: Persistent) -> OmegaConfView:
    """The generator's config; a stylegan2-ada image generator (no cfg, no motion encoder) is named as such."""
    has_motion = submodule(g_ema, "synthesis.motion_encoder") is not None
    if g_ema.class_name != "Generator" or "cfg" not in g_ema.state or not has_motion:
        kind = ("a StyleGAN2 image-generator snapshot (stylegan2-ada-pytorch layout: a Generator without motion "
                "networks)" if g_ema.class_name == "Generator" else f"a '{g_ema.class_name}' network")
        raise UserError(f"{path} is {kind}; vidgen import stylegan-v reads StyleGAN-V video snapshots, whose "
                        "generator has a motion encoder")
    return OmegaConfView(g_ema.state["cfg"])


def _init_kwargs(obj: Any) -> OmegaConfView:
    state = module_state(obj) or {}
    return OmegaConfView(state.get("_init_kwargs") or {})


def _training_set(snapshot: dict[str, Any]) -> dict[str, Any]:
    kwargs = snapshot.get("training_set_kwargs")
    return dict(kwargs) if isinstance(kwargs, dict) else {}


def _augment_p(pipe: Any) -> float:
    """ADA's probability when the snapshot was written (the augment pipe's `p` buffer), 0 without one."""
    if module_state(pipe) is None:
        return 0.0
    p = state_dict(pipe).get("p")
    return float(p) if p is not None and p.numel() == 1 else 0.0


def _kimg(path: Path) -> int | None:
    """Thousands of training frames seen, from the official file name network-snapshot-<kimg>.pkl."""
    match = re.search(r"network-snapshot-(\d+)", path.name)
    return int(match.group(1)) if match else None


# ----------------------------------------------------------------------------------------------------------
# The recipe


def derive_recipe(path: Path, snapshot: dict[str, Any], cfg: OmegaConfView) -> dict[str, Any]:
    """A vidgen recipe (as raw sections) with the snapshot's settings; a setting vidgen does not implement is
    one error naming it."""
    g_kwargs = _init_kwargs(snapshot["G_ema"])
    d_state = module_state(snapshot.get("D")) or {}
    d_kwargs = _init_kwargs(snapshot.get("D"))
    d_cfg = OmegaConfView(d_state.get("cfg") or {})

    def need(value: Any, expected: Any, setting: str) -> None:
        if value != expected:
            raise UserError(f"{path} uses {setting} = {value!r}, which vidgen's StyleGAN-V does not implement "
                            f"(it has {expected!r} only)")

    resolution = g_kwargs.get("img_resolution")
    if not isinstance(resolution, int) or resolution < 8 or resolution & (resolution - 1):
        raise UserError(f"{path} has an unknown resolution {resolution!r}: StyleGAN-V generators are square with a "
                        "power-of-two side of at least 8 (the published ones: 256)")
    need(g_kwargs.get("img_channels"), 3, "img_channels")
    need(g_kwargs.get("c_dim"), 0, "c_dim (a class-conditional model)")
    need(cfg.get("use_noise"), False, "use_noise (per-pixel noise inputs)")
    need(cfg.get("input.type"), "temporal", "input.type")
    need(cfg.get("time_enc.cond_type"), "concat_const", "time_enc.cond_type")
    need(cfg.get("motion.gen_strategy"), "conv", "motion.gen_strategy")
    need(cfg.get("motion.fourier"), True, "motion.fourier")
    need(2 * cfg.get("time_enc.dim", 0), cfg.get("motion.v_dim"), "2 x time_enc.dim (against motion.v_dim)")
    need(d_cfg.get("num_frames_div_factor", 2), 2, "discriminator num_frames_div_factor")
    need(d_cfg.get("dummy_c", False), False, "discriminator dummy_c")
    need(cfg.get("sampling.type"), "random", "sampling.type")
    concat = d_cfg.get("concat_res", 16)
    if not resolution > concat:
        raise UserError(f"{path} has an unknown resolution {resolution}: its discriminator concatenates frames at "
                        f"{concat}x{concat}, which needs a larger image")
    synthesis = OmegaConfView(g_kwargs.get("synthesis_kwargs") or {})
    for key in ("channel_base", "channel_max"):
        need(d_kwargs.get(key), synthesis.get(key), f"discriminator {key} (against the generator's)")
    delta = cfg.get("motion.motion_z_distance")
    min_period = cfg.get("time_enc.min_period_len")
    frames = cfg.get("sampling.num_frames_per_video")
    fps = cfg.get("sampling.fps", 25)
    model = {
        "name": "stylegan-v",
        "z_dim": cfg.get("z_dim"),
        "w_dim": g_kwargs.get("w_dim"),
        "mapping_layers": OmegaConfView(g_kwargs.get("mapping_kwargs") or {}).get("num_layers", 8),
        "channel_base": synthesis.get("channel_base"),
        "channel_max": synthesis.get("channel_max", 512),
        "fp16_resolutions": synthesis.get("num_fp16_res", 0),
        "conv_clamp": None if synthesis.get("conv_clamp") is None else float(synthesis.get("conv_clamp")),
        "motion_z_dim": cfg.get("motion.z_dim"),
        "motion_v_dim": cfg.get("motion.v_dim"),
        "motion_z_distance": delta,
        "motion_kernel_size": cfg.get("motion.kernel_size"),
        "time_min_period": None if min_period == delta else float(min_period),
        "time_max_period": float(cfg.get("time_enc.max_period_len")),
        "num_frames_per_clip": frames,
        "max_frame_distance": cfg.get("sampling.max_dist", 32),
        "max_num_frames": cfg.get("sampling.max_num_frames", 1024),
        "d_concat_resolution": concat,
        "mbstd_group": OmegaConfView(d_kwargs.get("epilogue_kwargs") or {}).get("mbstd_group_size", 4),
        "augment": "ada",
    }
    stem = path.stem.replace("network-snapshot-", "")
    return {
        "run": {"name": f"stylegan-v-official-{stem}",
                "description": f"StyleGAN-V imported from the official snapshot {path.name}"},
        "data": {"source": str(_training_set(snapshot).get("path", "")) or "not recorded",
                 "resolution": resolution, "frames": frames, "fps": float(fps)},
        "model": model,
        "train": {"lr": 0.0025, "betas": [0.0, 0.99], "precision": "fp32"},
        "sample": {"frames": 128},
    }


# ----------------------------------------------------------------------------------------------------------
# Renaming


def generator_renames(cfg: Any, resolution: int) -> dict[str, Rename]:
    """Official generator tensor name -> its place in vidgen's Generator."""
    out = {"mapping.w_avg": Rename("mapping.w_avg")}
    for i in range(cfg.mapping_layers):
        for p in ("weight", "bias"):
            out[f"mapping.fc{i}.{p}"] = Rename(f"mapping.layers.{i}.{p}")
    motion = "synthesis.motion_encoder."
    for i in (0, 1):
        for p in ("weight", "bias"):
            out[f"{motion}conv.{i}.{p}"] = Rename(f"motion.mapping.conv{i}.{p}")
    for official, ours in (("periods_predictor", "period_predictor"), ("phase_predictor", "phase_predictor"),
                           ("aligners_predictor", "aligner")):
        out[f"{motion}time_encoder.{official}.weight"] = Rename(f"motion.encoding.{ours}.weight")
    out["synthesis.b4.input.input.const"] = Rename("synthesis.blocks.0.const", lambda c: c.reshape(c.shape[1:]))
    for index in range(int(math.log2(resolution)) - 1):
        res, block = 4 * 2 ** index, f"synthesis.blocks.{index}."
        for layer in ("conv0", "conv1", "torgb") if res > 4 else ("conv1", "torgb"):
            for p in ("weight", "bias", "affine.weight", "affine.bias"):
                flip = flip_kernel if layer == "conv0" and p == "weight" else None
                out[f"synthesis.b{res}.{layer}.{p}"] = Rename(block + f"{layer}.{p}", flip)
    return out


def discriminator_renames(cfg: Any, resolution: int) -> dict[str, Rename]:
    """Official discriminator tensor name -> its place in vidgen's Discriminator."""
    out = {"time_encoder.const_embed.weight": Rename("time_encoder.embedding.weight")}
    for p in ("weight", "bias"):
        out[f"b{resolution}.fromrgb.{p}"] = Rename(f"fromrgb.{p}")
        out[f"mapping.embed.{p}"] = Rename(f"mapping.embed.{p}")
        for i in range(2):
            out[f"mapping.fc{i}.{p}"] = Rename(f"mapping.layers.{i}.{p}")
        for layer in ("conv", "fc", "out"):
            out[f"b4.{layer}.{p}"] = Rename(f"epilogue.{layer}.{p}")
    concat, res = min(cfg.d_concat_resolution, resolution), resolution
    while res > 4:
        if res > concat:
            block = f"frame_blocks.{int(math.log2(resolution // res))}."
        else:
            block = f"joint_blocks.{int(math.log2(concat // res))}."
        for name in ("conv0.weight", "conv0.bias", "conv1.weight", "conv1.bias", "skip.weight"):
            out[f"b{res}.{name}"] = Rename(block + name)
        res //= 2
    return out


DERIVED_BUFFERS = {
    "synthesis.motion_encoder.time_encoder.freqs": "motion.encoding.freqs",
    "synthesis.motion_encoder.time_encoder.phase_scales": "motion.encoding.phase_scales",
    "time_encoder.time_encoder.fourier_coefs": "time_encoder.freqs",
}
"""Official buffers that vidgen computes from the recipe (non-persistent there): compared, not copied."""


def convert(path: Path, name: str, official: dict[str, torch.Tensor], target: torch.nn.Module,
            renames: dict[str, Rename]) -> dict[str, torch.Tensor]:
    """The official tensors of one network renamed into `target`'s state dict, every tensor accounted for."""
    ours = target.state_dict()
    buffers = dict(target.named_buffers())
    converted: dict[str, torch.Tensor] = {}
    for key, tensor in official.items():
        if key.endswith("resample_filter"):
            _check_constant(path, name, key, tensor, _vidgen_filter())
            continue
        if key in DERIVED_BUFFERS and DERIVED_BUFFERS[key] in buffers:
            _check_constant(path, name, key, tensor, buffers[DERIVED_BUFFERS[key]])
            continue
        rename = renames.get(key)
        if rename is None or rename.target not in ours:
            raise UserError(f"{path}: {name} has a tensor {key} that vidgen's StyleGAN-V has no place for; it is a "
                            "variant vidgen does not implement")
        value = tensor.float() if rename.transform is None else rename.transform(tensor.float())
        if value.shape != ours[rename.target].shape:
            raise UserError(f"{path}: {name}.{key} has shape {tuple(value.shape)} where vidgen expects "
                            f"{tuple(ours[rename.target].shape)}; its settings were not read right")
        converted[rename.target] = value.contiguous()
    missing = sorted(set(ours) - set(converted))
    if missing:
        raise UserError(f"{path}: {name} lacks {', '.join(missing[:3])}"
                        f"{' ...' if len(missing) > 3 else ''} that vidgen's StyleGAN-V needs")
    return converted


def _vidgen_filter() -> torch.Tensor:
    from vidgen.models.stylegan_v.layers import setup_filter

    return setup_filter()


def _check_constant(path: Path, name: str, key: str, official: torch.Tensor, ours: torch.Tensor) -> None:
    if official.numel() != ours.numel() or not torch.allclose(official.float().reshape(ours.shape), ours.float(),
                                                              rtol=1e-5, atol=1e-7):
        raise UserError(f"{path}: {name}.{key} differs from what vidgen computes for the snapshot's settings; it is "
                        "a StyleGAN-V variant vidgen does not implement")
