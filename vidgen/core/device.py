"""Devices and mixed precision, passed explicitly (no global device state)."""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch

from vidgen.errors import UserError


def resolve_device(spec: str = "auto") -> torch.device:
    """`auto` picks CUDA, then MPS, then CPU; an explicit device that is not there is a UserError."""
    spec = spec.strip().lower()
    if spec == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", torch.cuda.current_device())
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(spec)
    except RuntimeError:
        raise UserError(f"unknown device '{spec}'; use auto, cpu, cuda, cuda:N or mps") from None
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise UserError(f"device '{spec}' was asked for but CUDA is not available here "
                            "(no GPU, or a CPU-only torch build); use --device cpu")
        index = 0 if device.index is None else device.index
        if index >= count:
            raise UserError(f"device '{spec}' does not exist: this machine has {count} CUDA device(s), "
                            f"cuda:0..cuda:{count - 1}")
        return torch.device("cuda", index)
    if device.type == "mps" and not _mps_available():
        raise UserError("device 'mps' was asked for but MPS is not available here; use --device cpu")
    if device.type not in ("cpu", "cuda", "mps"):
        raise UserError(f"unsupported device '{spec}'; use auto, cpu, cuda, cuda:N or mps")
    return device


def configure_backends(device: torch.device) -> None:
    """TF32 matmuls/convolutions on CUDA (Ampere and newer): ~free speed for training at fp32."""
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True


_AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def check_precision(precision: str, device: torch.device) -> None:
    if precision == "fp16" and device.type == "cpu":
        raise UserError("precision fp16 needs a GPU (CPU autocast supports bf16); use --precision bf16 or fp32")
    if precision == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise UserError(f"{torch.cuda.get_device_name(device)} does not support bf16; use --precision fp16")


@contextlib.contextmanager
def autocast(device: torch.device, precision: str) -> Iterator[None]:
    """torch.autocast for bf16/fp16; a no-op for fp32."""
    if precision == "fp32":
        yield
        return
    with torch.autocast(device_type=device.type, dtype=_AUTOCAST_DTYPES[precision]):
        yield


def make_grad_scaler(device: torch.device, precision: str) -> torch.amp.GradScaler:
    """Loss scaling is needed for fp16 only; a disabled scaler is a transparent pass-through."""
    return torch.amp.GradScaler(device.type, enabled=precision == "fp16")


def memory_allocated_mb(device: torch.device) -> float | None:
    """Peak memory allocated by tensors on an accelerator (None on CPU, where torch does not track it)."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return None


def describe_devices() -> list[dict[str, str]]:
    """One row per device this machine offers, for `vidgen info`."""
    rows = [{"device": "cpu", "name": "CPU", "memory": "", "available": "yes"}]
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            props = torch.cuda.get_device_properties(i)
            rows.append({"device": f"cuda:{i}", "name": props.name,
                         "memory": f"{props.total_memory / 2**30:.1f} GiB", "available": "yes"})
    else:
        rows.append({"device": "cuda", "name": "-", "memory": "", "available": "no"})
    rows.append({"device": "mps", "name": "Apple GPU" if _mps_available() else "-", "memory": "",
                 "available": "yes" if _mps_available() else "no"})
    return rows


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend and backend.is_available())
