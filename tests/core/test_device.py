"""Device resolution and mixed precision. The CUDA branches run on a CPU-only machine by faking what torch.cuda
reports (is_available, device_count, ...); nothing here touches a real GPU."""

from types import SimpleNamespace

import pytest
import torch

from vidgen.core import device as device_module
from vidgen.core.device import (autocast, check_precision, configure_backends, describe_devices,
                                make_grad_scaler, memory_allocated_mb, resolve_device)
from vidgen.errors import ConfigError, UserError


@pytest.fixture
def no_accelerator(monkeypatch):
    """This machine as a CPU-only host, whatever it really has."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    monkeypatch.setattr(device_module, "_mps_available", lambda: False)


@pytest.fixture
def fake_cuda(monkeypatch):
    """A host with two CUDA devices, the second one current."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 1)
    monkeypatch.setattr(device_module, "_mps_available", lambda: False)


def assert_one_line_user_error(excinfo, *fragments):
    message = str(excinfo.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message


# --- resolve_device ---

@pytest.mark.parametrize("spec", ["auto", "AUTO", " auto "])
def test_auto_is_cpu_without_an_accelerator(no_accelerator, spec):
    assert resolve_device(spec) == torch.device("cpu")


def test_auto_prefers_cuda_then_mps(monkeypatch, fake_cuda):
    assert resolve_device("auto") == torch.device("cuda", 1)  # the current CUDA device, with its index
    monkeypatch.setattr(device_module, "_mps_available", lambda: True)
    assert resolve_device("auto").type == "cuda"  # CUDA wins over MPS
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("mps")


@pytest.mark.parametrize("spec", ["cpu", "CPU", " cpu "])
def test_cpu_is_always_there(no_accelerator, spec):
    assert resolve_device(spec) == torch.device("cpu")


@pytest.mark.parametrize("spec", ["cuda", "cuda:0", "cuda:1"])
def test_cuda_without_cuda_is_a_one_line_user_error(no_accelerator, spec):
    with pytest.raises(UserError) as excinfo:
        resolve_device(spec)
    assert not isinstance(excinfo.value, ConfigError)
    assert_one_line_user_error(excinfo, f"device '{spec}'", "CUDA is not available", "--device cpu")


def test_cuda_on_this_machine_matches_what_torch_reports():
    """No faking: on a CPU-only host asking for CUDA is an error, on a GPU host it is cuda:0."""
    if torch.cuda.is_available():
        assert resolve_device("cuda") == torch.device("cuda", 0)
    else:
        with pytest.raises(UserError, match="CUDA is not available"):
            resolve_device("cuda")


@pytest.mark.parametrize("spec, expected", [("cuda", ("cuda", 0)), ("cuda:0", ("cuda", 0)), ("cuda:1", ("cuda", 1)),
                                            ("CUDA:1", ("cuda", 1))])
def test_cuda_devices_that_exist_resolve_with_an_index(fake_cuda, spec, expected):
    assert resolve_device(spec) == torch.device(*expected)


@pytest.mark.parametrize("spec", ["cuda:2", "cuda:7"])
def test_a_cuda_index_past_the_last_device_is_a_one_line_user_error(fake_cuda, spec):
    with pytest.raises(UserError) as excinfo:
        resolve_device(spec)
    assert_one_line_user_error(excinfo, f"device '{spec}' does not exist", "2 CUDA device(s)", "cuda:0..cuda:1")


def test_mps(monkeypatch, no_accelerator):
    with pytest.raises(UserError) as excinfo:
        resolve_device("mps")
    assert_one_line_user_error(excinfo, "device 'mps'", "MPS is not available", "--device cpu")
    monkeypatch.setattr(device_module, "_mps_available", lambda: True)
    assert resolve_device("mps") == torch.device("mps")


@pytest.mark.parametrize("spec", ["garbage", "", "gpu", "cuda:x", "cuda:-1", "cpu,cuda"])
def test_an_unparseable_device_is_a_one_line_user_error(no_accelerator, spec):
    with pytest.raises(UserError) as excinfo:
        resolve_device(spec)
    assert_one_line_user_error(excinfo, "unknown device", "use auto, cpu, cuda, cuda:N or mps")


@pytest.mark.parametrize("spec", ["meta", "xla", "xpu"])
def test_a_real_but_unsupported_torch_device_is_a_one_line_user_error(no_accelerator, spec):
    with pytest.raises(UserError) as excinfo:
        resolve_device(spec)
    assert_one_line_user_error(excinfo, f"unsupported device '{spec}'", "use auto, cpu, cuda, cuda:N or mps")


# --- check_precision ---

@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_cpu_runs_fp32_and_bf16(precision):
    check_precision(precision, torch.device("cpu"))  # no error


def test_fp16_on_cpu_is_a_one_line_user_error():
    with pytest.raises(UserError) as excinfo:
        check_precision("fp16", torch.device("cpu"))
    assert_one_line_user_error(excinfo, "fp16 needs a GPU", "--precision bf16 or fp32")


@pytest.mark.parametrize("precision", ["fp32", "fp16", "bf16"])
def test_cuda_with_bf16_support_runs_every_precision(monkeypatch, precision):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: True)
    check_precision(precision, torch.device("cuda", 0))


def test_bf16_on_a_cuda_device_without_it_names_the_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: False)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "Tesla V100-SXM2-16GB")
    for precision in ("fp32", "fp16"):
        check_precision(precision, torch.device("cuda", 0))  # V100: fp16 is the mixed precision it has
    with pytest.raises(UserError) as excinfo:
        check_precision("bf16", torch.device("cuda", 0))
    assert_one_line_user_error(excinfo, "Tesla V100-SXM2-16GB does not support bf16", "--precision fp16")


# --- autocast and the gradient scaler ---

def test_fp32_autocast_is_a_no_op():
    a = torch.ones(4, 4)
    with autocast(torch.device("cpu"), "fp32"):
        assert not torch.is_autocast_enabled("cpu")
        assert (a @ a).dtype == torch.float32


def test_bf16_autocast_runs_matmuls_in_bf16_inside_only():
    a = torch.ones(4, 4)
    with autocast(torch.device("cpu"), "bf16"):
        assert (a @ a).dtype == torch.bfloat16
    assert not torch.is_autocast_enabled("cpu")
    assert (a @ a).dtype == torch.float32


def test_fp16_autocast_runs_matmuls_in_fp16():
    a = torch.ones(4, 4)
    with autocast(torch.device("cpu"), "fp16"):  # the CPU stands in for a GPU: autocast itself is device-agnostic
        assert (a @ a).dtype == torch.float16


@pytest.mark.parametrize("precision, enabled", [("fp32", False), ("bf16", False), ("fp16", True)])
def test_grad_scaler_is_enabled_for_fp16_only(precision, enabled):
    scaler = make_grad_scaler(torch.device("cpu"), precision)
    assert scaler.is_enabled() is enabled
    if not enabled:
        loss = torch.tensor(3.0)
        assert scaler.scale(loss) is loss  # a transparent pass-through


# --- configure_backends and memory ---

@pytest.fixture
def backend_flags():
    """Start from all three process-wide flags off, and put their values back afterwards."""
    flags = [(torch.backends.cuda.matmul, "allow_tf32"), (torch.backends.cudnn, "allow_tf32"),
             (torch.backends.cudnn, "benchmark")]
    saved = [getattr(owner, name) for owner, name in flags]
    for owner, name in flags:
        setattr(owner, name, False)
    yield lambda: tuple(getattr(owner, name) for owner, name in flags)
    for (owner, name), value in zip(flags, saved):
        setattr(owner, name, value)


def test_configure_backends_turns_on_tf32_for_cuda_only(backend_flags):
    configure_backends(torch.device("cpu"))
    assert backend_flags() == (False, False, False)
    configure_backends(torch.device("cuda", 0))
    assert backend_flags() == (True, True, True)


def test_memory_is_tracked_on_cuda_only(monkeypatch):
    assert memory_allocated_mb(torch.device("cpu")) is None
    monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda device=None: 3 * 2**20 + 2**19)
    assert memory_allocated_mb(torch.device("cuda", 0)) == 3.5


# --- describe_devices (`vidgen info`) ---

def test_describe_devices_without_an_accelerator(no_accelerator):
    rows = describe_devices()
    assert [list(row) for row in rows] == [["device", "name", "memory", "available"]] * 3  # the table's columns
    assert [(row["device"], row["available"]) for row in rows] == [("cpu", "yes"), ("cuda", "no"), ("mps", "no")]


def test_describe_devices_lists_each_cuda_device(monkeypatch, fake_cuda):
    props = {0: SimpleNamespace(name="NVIDIA H100", total_memory=80 * 2**30),
             1: SimpleNamespace(name="NVIDIA A10G", total_memory=int(22.5 * 2**30))}
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda i: props[i])
    rows = describe_devices()
    assert rows[1:3] == [
        {"device": "cuda:0", "name": "NVIDIA H100", "memory": "80.0 GiB", "available": "yes"},
        {"device": "cuda:1", "name": "NVIDIA A10G", "memory": "22.5 GiB", "available": "yes"},
    ]
    assert [row["device"] for row in rows] == ["cpu", "cuda:0", "cuda:1", "mps"]


def test_the_default_device_is_one_describe_devices_calls_available():
    """What `vidgen info` prints as the default is always a device its table says is there."""
    default = resolve_device("auto")
    available = {row["device"] for row in describe_devices() if row["available"] == "yes"}
    assert str(default) in available


def test_bf16_autocast_convolves_a_one_frame_rgb_video_correctly():
    """oneDNN's AMX bf16 kernels got this shape wrong (relative error ~1); importing vidgen selects its AVX-512 BF16
    ones (vidgen/__init__.py). Within bfloat16's rounding of a 27-term sum on CPUs with or without AMX."""
    import vidgen  # noqa: F401 - the import sets the kernel choice before the first convolution

    conv = torch.nn.Conv3d(3, 8, 3, padding=1)
    x = torch.rand(4, 3, 1, 16, 16, generator=torch.Generator().manual_seed(0)) * 2 - 1
    with torch.no_grad():
        want = conv(x)
        with autocast(torch.device("cpu"), "bf16"):
            got = conv(x).float()
    assert (got - want).abs().max() <= 0.02 * want.abs().max()
