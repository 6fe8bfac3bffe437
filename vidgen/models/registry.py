"""The model registry: backend name -> its config classes, a builder, and the tiny recipe the backend
contract suite (tests/models/test_backend_contract.py) runs it with.

Config classes are imported eagerly (they are plain dataclasses); the backend itself, which needs torch, is
imported only when built, so loading a recipe stays fast. Adding a family is one BackendSpec line here (see
vidgen/models/README.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

from vidgen.errors import ConfigError
from vidgen.core.config import SampleConfig
from vidgen.models.dvg.config import DVGConfig, DVGSampleConfig
from vidgen.models.stylegan_v.config import StyleGANVConfig, StyleGANVSampleConfig
from vidgen.models.tganv2.config import TGANv2Config, TGANv2SampleConfig
from vidgen.models.vdm.config import VDMConfig, VDMSampleConfig
from vidgen.models.videogpt.config import VideoGPTConfig, VideoGPTSampleConfig, VQVAEConfig, VQVAESampleConfig

if TYPE_CHECKING:
    from pathlib import Path

    from vidgen.core.config import Recipe
    from vidgen.models.base import Backend, FrozenStage, OfficialImport


@dataclass(frozen=True)
class UpstreamSpec:
    """A two-stage family's first stage: the model section's field that names the stage-1 run, and the family
    that run must be (vidgen/upstream.py loads it)."""

    field: str
    family: str


@dataclass(frozen=True)
class BackendSpec:
    name: str
    """The recipe's model.name."""
    description: str
    config_class: type
    """The model section's dataclass."""
    build: Callable[..., Backend]
    """build(recipe), or build(recipe, upstream) for a family with an `upstream`."""
    sample_class: type[SampleConfig]
    """The sample section's dataclass: SampleConfig, or the backend's subclass with its own options."""
    tiny_recipe: str
    """The built-in recipe the contract suite starts from ..."""
    test_overrides: tuple[str, ...]
    """... with these `--set` overrides, which make it run in seconds on a CPU through the same code paths."""
    upstream: UpstreamSpec | None = None
    """The stage-1 run this family is trained on, frozen (None: a one-stage family)."""
    import_official: Callable[[Path], OfficialImport] | None = None
    """Converts a checkpoint of the family's reference implementation (`vidgen import`); None: not supported."""


def _build_vdm(recipe: Recipe) -> Backend:
    from vidgen.models.vdm.backend import VDMBackend

    return VDMBackend(recipe)


def _build_stylegan_v(recipe: Recipe) -> Backend:
    from vidgen.models.stylegan_v.backend import StyleGANVBackend

    return StyleGANVBackend(recipe)


def _import_stylegan_v(path: Path) -> OfficialImport:
    from vidgen.models.stylegan_v.official import import_stylegan_v

    return import_stylegan_v(path)


def _build_tganv2(recipe: Recipe) -> Backend:
    from vidgen.models.tganv2.backend import TGANv2Backend

    return TGANv2Backend(recipe)


def _build_vqvae(recipe: Recipe) -> Backend:
    from vidgen.models.videogpt.vqvae_backend import VQVAEBackend

    return VQVAEBackend(recipe)


def _build_videogpt(recipe: Recipe, upstream: FrozenStage) -> Backend:
    from vidgen.models.videogpt.prior_backend import VideoGPTBackend

    return VideoGPTBackend(recipe, upstream)


def _build_dvg(recipe: Recipe) -> Backend:
    from vidgen.models.dvg.backend import DVGBackend

    return DVGBackend(recipe)


BACKENDS: dict[str, BackendSpec] = {
    spec.name: spec
    for spec in (
        BackendSpec("vdm", "Video Diffusion Models (Ho et al. 2022): factorized space-time U-Net",
                    VDMConfig, _build_vdm, VDMSampleConfig, "vdm-tiny", (
                        "model.channels=8", "model.channel_mults=[1,2]", "model.attention_resolutions=[8]",
                        "model.temporal_attention_resolutions=[8]", "model.head_channels=8", "model.norm_groups=4",
                        "data.resolution=16", "data.frames=4", "data.synthetic_videos=64", "data.workers=0",
                        "train.batch_size=2", "train.lr=5e-3", "train.warmup_steps=0", "train.log_every=1",
                        "sample.steps=4", "sample.num=2")),
        BackendSpec("stylegan-v", "StyleGAN-V (Skorokhodov et al. 2022): continuous-time video GAN on StyleGAN2",
                    StyleGANVConfig, _build_stylegan_v, StyleGANVSampleConfig, "stylegan-v-tiny", (
                        "model.z_dim=8", "model.w_dim=8", "model.motion_z_dim=8", "model.motion_v_dim=8",
                        "model.channel_base=128", "model.channel_max=8", "data.resolution=16",
                        "data.synthetic_videos=64", "data.workers=0", "train.batch_size=4", "train.log_every=1",
                        "sample.num=2", "sample.frames=5"),
                    import_official=_import_stylegan_v),
        BackendSpec("videogpt-vqvae", "VideoGPT stage 1 (Yan et al. 2021): 3D VQ-VAE with an EMA codebook",
                    VQVAEConfig, _build_vqvae, VQVAESampleConfig, "videogpt-tiny-vqvae", (
                        "model.n_hiddens=16", "model.n_res_layers=1", "model.n_codes=32", "model.embedding_dim=8",
                        "model.downsample=[2,4,4]", "data.resolution=16", "data.frames=4",
                        "data.synthetic_videos=64", "data.workers=0", "train.batch_size=2", "train.lr=3e-3",
                        "train.warmup_steps=0", "train.log_every=1", "sample.num=2")),
        BackendSpec("videogpt", "VideoGPT stage 2 (Yan et al. 2021): GPT prior over the VQ-VAE's codes",
                    VideoGPTConfig, _build_videogpt, VideoGPTSampleConfig, "videogpt-tiny", (
                        "model.width=16", "model.heads=2", "model.layers=1", "model.dropout=0",
                        "model.attn_dropout=0", "data.resolution=16", "data.frames=4", "data.synthetic_videos=64",
                        "data.workers=0", "train.batch_size=2", "train.lr=3e-3", "train.warmup_steps=0",
                        "train.log_every=1", "sample.num=2"),
                    upstream=UpstreamSpec("vqvae", "videogpt-vqvae")),
        BackendSpec("tganv2", "TGANv2 (Saito et al. 2020): multi-level sparse video GAN, train sparsely, generate "
                    "densely", TGANv2Config, _build_tganv2, TGANv2SampleConfig, "tganv2-tiny", (
                        "model.z_slow_dim=16", "model.t_size=2", "model.clstm_ch=8", "model.g_channels=[16,8,8]",
                        "model.frame_factors=[2,2]", "model.batch_factors=[1,1]", "model.d_channels=[8,16]",
                        "data.resolution=16", "data.frames=4", "data.synthetic_videos=64", "data.workers=0",
                        "train.batch_size=4", "train.lr=1e-3", "train.log_every=1", "sample.num=2",
                        "sample.frames=6")),
        BackendSpec("dvg", "DVG (Shrivastava & Shrivastava 2021): video prediction with a Gaussian-process trigger",
                    DVGConfig, _build_dvg, DVGSampleConfig, "dvg-tiny", (
                        "model.width=8", "model.g_dim=8", "model.rnn_size=16", "model.rnn_layers=1",
                        "model.inducing_points=8", "model.context_frames=2", "data.resolution=16", "data.frames=4",
                        "data.synthetic_videos=64", "data.workers=0", "train.batch_size=4", "train.log_every=1",
                        "sample.num=2", "sample.frames=6")),
    )
}


def get_backend_spec(name: str) -> BackendSpec:
    if name not in BACKENDS:
        raise ConfigError(f"unknown model '{name}'; known models: {', '.join(BACKENDS)}")
    return BACKENDS[name]


def build_backend(recipe: Recipe, upstream: FrozenStage | None = None) -> Backend:
    """The recipe's backend; a two-stage family needs its loaded first stage (vidgen/upstream.py)."""
    spec = get_backend_spec(recipe.model.name)
    if spec.upstream is None:
        return spec.build(recipe)
    if upstream is None:
        raise ValueError(f"a '{spec.name}' backend is built on a '{spec.upstream.family}' run: pass its "
                         "FrozenStage (vidgen.upstream.load_upstream)")
    return spec.build(recipe, upstream)
