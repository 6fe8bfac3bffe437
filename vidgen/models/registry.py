"""The model registry: backend name -> its config class and a builder.

Config classes are imported eagerly (they are plain dataclasses); the backend itself, which needs torch, is
imported only when built, so loading a recipe stays fast.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

from vidgen.errors import ConfigError
from vidgen.models.stylegan_v.config import StyleGANVConfig
from vidgen.models.vdm.config import VDMConfig

if TYPE_CHECKING:
    from vidgen.core.config import Recipe
    from vidgen.models.base import Backend


@dataclass(frozen=True)
class BackendSpec:
    name: str
    description: str
    config_class: type
    build: Callable[[Recipe], Backend]


def _build_vdm(recipe: Recipe) -> Backend:
    from vidgen.models.vdm.backend import VDMBackend

    return VDMBackend(recipe)


def _build_stylegan_v(recipe: Recipe) -> Backend:
    from vidgen.models.stylegan_v.backend import StyleGANVBackend

    return StyleGANVBackend(recipe)


BACKENDS: dict[str, BackendSpec] = {
    spec.name: spec
    for spec in (
        BackendSpec("vdm", "Video Diffusion Models (Ho et al. 2022): factorized space-time U-Net",
                    VDMConfig, _build_vdm),
        BackendSpec("stylegan-v", "StyleGAN-V (Skorokhodov et al. 2022): continuous-time video GAN on StyleGAN2",
                    StyleGANVConfig, _build_stylegan_v),
    )
}


def get_backend_spec(name: str) -> BackendSpec:
    if name not in BACKENDS:
        raise ConfigError(f"unknown model '{name}'; known models: {', '.join(BACKENDS)}")
    return BACKENDS[name]


def model_config_class(name: str) -> type:
    return get_backend_spec(name).config_class


def build_backend(recipe: Recipe) -> Backend:
    return get_backend_spec(recipe.model.name).build(recipe)
