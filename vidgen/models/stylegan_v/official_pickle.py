"""Read an official StyleGAN-V snapshot (network-snapshot-*.pkl) as data, never running code from it.

The official code base (universome/stylegan-v, from NVlabs/stylegan2-ada-pytorch) pickles each network with its
`torch_utils/persistence.py`: a network is stored as a call `_reconstruct_persistent_obj(meta)` whose `meta` holds
the source code of the network's Python module, the class name and the object's `__dict__`; unpickling it the
usual way executes that source. Its configs are OmegaConf objects, some helper modules are referenced by import
path (so loading needs the code base on the path), and any pickle can call any importable function.

Here an unpickler resolves every global the stream names through a short allow-list instead of importing it:

- the persistence call becomes a `Persistent(class_name, state)` record; the embedded source is dropped unread;
- the network, OmegaConf and dnnlib classes the snapshots name become inert `Record`s that keep only their
  pickled state (no constructor or `__setstate__` of theirs runs, their modules are not imported);
- tensors are rebuilt from their storages, which torch reads with its weights-only loader;
- numpy scalars, OrderedDict and a few type names are rebuilt as plain values.

Anything else (`os.system`, `builtins.exec`, any other callable) ends the read at that opcode with UnsafePickle,
before anything is called. The result is a tree of records, tensors and plain values; `state_dict` and
`OmegaConfView` read networks and settings out of it.
"""

from __future__ import annotations

import io
import pickle
import re
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

PERSISTENCE_MODULES = ("torch_utils.persistence", "src.torch_utils.persistence")
RECORD_MODULE_PREFIXES = ("torch.nn.modules.", "training.", "src.training.", "omegaconf.", "dnnlib.", "src.dnnlib.")
"""Classes from these modules (the networks' own, torch's standard layers, OmegaConf, dnnlib's EasyDict) are
reconstructed as inert records of their pickled state."""
DICT_CLASSES = ("EasyDict",)
"""dnnlib's attribute dictionary: a dict subclass, pickled with its items."""
TYPE_NAMES = {("builtins", name) for name in ("dict", "list", "tuple", "set", "int", "float", "str", "bool",
                                              "bytes", "object", "NoneType")}
"""Types OmegaConf's metadata names (a node's declared type), and any `typing` name; read as their names.
Annotations such as Dict[str, Any] or Optional[int] are pickled as calls of operator.getitem and type(None);
those calls are replaced by ones that only spell the annotation out."""


class UnsafePickle(pickle.UnpicklingError):
    """The stream names a global outside the allow-list: loading it the usual way would call it."""

    def __init__(self, module: str, name: str) -> None:
        super().__init__(f"{module}.{name}")
        self.qualified_name = f"{module}.{name}"


@dataclass
class Persistent:
    """A network the persistence module pickled: its class name and its pickled __dict__ (no source)."""

    class_name: str
    state: dict[str, Any]


class Record:
    """An instance of an allowed class, kept as the data it was pickled with (REDUCE arguments and BUILD state)."""

    qualified_name = "?"
    args: tuple[Any, ...] = ()
    state: Any = None

    def __init__(self, *args: Any) -> None:
        self.args = args

    def __setstate__(self, state: Any) -> None:
        self.state = state

    def __repr__(self) -> str:
        return f"Record({self.qualified_name})"


class DictRecord(dict):
    """An instance of an allowed dict subclass (dnnlib.EasyDict): its items, plus any BUILD state."""

    qualified_name = "?"
    state: Any = None

    def __setstate__(self, state: Any) -> None:
        self.state = state


def _persistent(meta: Any) -> Persistent:
    if not isinstance(meta, dict) or meta.get("type") != "class" or not isinstance(meta.get("state"), dict):
        raise pickle.UnpicklingError("a persistent object without a class name and state")
    return Persistent(str(meta.get("class_name")), meta["state"])


def _load_storage(data: bytes) -> Any:
    """A storage that pickle wrote as torch.save bytes: read by torch's weights-only loader."""
    if not isinstance(data, bytes):
        raise pickle.UnpicklingError("a tensor storage that is not bytes")
    return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)


def _rebuild_tensor(storage: Any, offset: int, size: tuple[int, ...], stride: tuple[int, ...], *_: Any
                    ) -> torch.Tensor:
    """torch._utils._rebuild_tensor_v2 without its hooks (requires_grad, backward hooks, metadata are dropped)."""
    if not isinstance(storage, (torch.TypedStorage, torch.UntypedStorage)):
        raise pickle.UnpicklingError("a tensor whose storage is not a tensor storage")
    return torch._utils._rebuild_tensor(storage, offset, tuple(size), tuple(stride))


def _rebuild_parameter(data: Any, *_: Any) -> torch.Tensor:
    if not isinstance(data, torch.Tensor):
        raise pickle.UnpicklingError("a parameter whose data is not a tensor")
    return data


def _numpy_scalar(dtype: Any, data: bytes = b"") -> Any:
    """numpy.core.multiarray.scalar: a number from its bytes (never an object dtype)."""
    if not isinstance(dtype, np.dtype) or dtype.hasobject or not isinstance(data, bytes):
        raise pickle.UnpicklingError("a numpy scalar that is not a plain number")
    return np.frombuffer(data, dtype=dtype, count=1)[0].item()


def _numpy_dtype(name: Any, *_: Any) -> np.dtype:
    if not isinstance(name, str) or not re.fullmatch(r"[<>|=]?[a-zA-Z]\d*", name):
        raise pickle.UnpicklingError(f"an unexpected numpy dtype {name!r}")
    return np.dtype(name)


def _spell_subscript(container: Any, item: Any) -> str:
    """operator.getitem on type names (typing.Dict[str, Any]): the annotation's text."""
    return f"{container}[{item}]"


def _spell_type_of(value: Any) -> str:
    """builtins.type(None), as Optional[...] pickles NoneType: the type's name."""
    return f"builtins.{type(value).__name__}" if value is None else "builtins.type"


def _plain_dict(*_: Any) -> dict:
    """collections.defaultdict (OmegaConf's resolver cache): a plain dict, without its factory."""
    return {}


SAFE_CALLABLES: dict[tuple[str, str], Any] = {
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    ("torch.storage", "_load_from_bytes"): _load_storage,
    ("collections", "OrderedDict"): OrderedDict,
    ("collections", "defaultdict"): _plain_dict,
    ("_operator", "getitem"): _spell_subscript,
    ("builtins", "type"): _spell_type_of,
    ("numpy", "dtype"): _numpy_dtype,
    ("numpy.core.multiarray", "scalar"): _numpy_scalar,
    ("numpy._core.multiarray", "scalar"): _numpy_scalar,
}


class SnapshotUnpickler(pickle.Unpickler):
    """An unpickler whose globals come from the allow-list above; anything else raises UnsafePickle."""

    def __init__(self, file: Any) -> None:
        super().__init__(file)
        self._records: dict[tuple[str, str], type] = {}

    def find_class(self, module: str, name: str) -> Any:
        key = (module, name)
        if key in SAFE_CALLABLES:
            return SAFE_CALLABLES[key]
        if module in PERSISTENCE_MODULES and name == "_reconstruct_persistent_obj":
            return _persistent
        if key in TYPE_NAMES or (module == "typing" and re.fullmatch(r"\w+", name)):
            return f"{module}.{name}"
        if module.startswith(RECORD_MODULE_PREFIXES) and re.fullmatch(r"\w+", name):
            if key not in self._records:
                base = DictRecord if name in DICT_CLASSES else Record
                self._records[key] = type(name, (base,), {"qualified_name": f"{module}.{name}"})
            return self._records[key]
        raise UnsafePickle(module, name)

    def persistent_load(self, pid: Any) -> Any:
        raise pickle.UnpicklingError("persistent ids are not used by network snapshots")


def read_snapshot(path: Path) -> Any:
    """The unpickled tree of a snapshot file. Raises UnsafePickle for a global outside the allow-list and
    pickle.UnpicklingError (or EOFError, ValueError, ...) for a stream that is not a pickle."""
    with open(path, "rb") as f:
        return SnapshotUnpickler(f).load()


# ----------------------------------------------------------------------------------------------------------
# Reading networks and settings out of the tree


def module_state(obj: Any) -> dict[str, Any] | None:
    """The pickled __dict__ of a torch.nn.Module record (persistent or not), or None if obj is not one."""
    state = obj.state if isinstance(obj, (Persistent, Record)) else None
    return state if isinstance(state, dict) and "_parameters" in state and "_modules" in state else None


def state_dict(obj: Any, prefix: str = "") -> dict[str, torch.Tensor]:
    """What module.state_dict() would give for a pickled module: parameters and persistent buffers, by dotted
    name."""
    state = module_state(obj)
    if state is None:
        raise ValueError(f"{prefix or 'the object'} is not a network")
    skip = set(state.get("_non_persistent_buffers_set") or ())
    out: dict[str, torch.Tensor] = {}
    for group in ("_parameters", "_buffers"):
        for name, tensor in (state.get(group) or {}).items():
            if tensor is not None and name not in skip:
                if not isinstance(tensor, torch.Tensor):
                    raise ValueError(f"{prefix}{name} is not a tensor")
                out[prefix + name] = tensor
    for name, child in (state.get("_modules") or {}).items():
        if child is not None:
            out.update(state_dict(child, f"{prefix}{name}."))
    return out


def parameter_count(obj: Any) -> int:
    """Number of parameter elements of a pickled module (buffers excluded), as sum(p.numel())."""
    state = module_state(obj)
    if state is None:
        return 0
    own = sum(t.numel() for t in (state.get("_parameters") or {}).values() if isinstance(t, torch.Tensor))
    return own + sum(parameter_count(child) for child in (state.get("_modules") or {}).values())


def submodule(obj: Any, dotted: str) -> Any:
    """The pickled child module at a dotted path, or None."""
    for name in dotted.split("."):
        state = module_state(obj)
        obj = None if state is None else (state.get("_modules") or {}).get(name)
    return obj


_INTERPOLATION = re.compile(r"^\$\{([A-Za-z_][\w.]*)\}$")


class OmegaConfView:
    """Read-only access to a pickled OmegaConf DictConfig record: get("motion.z_dim") walks its nodes, resolving
    absolute interpolations such as ${model.generator.time_enc.min_period_len} against the config's root (reached
    through the nodes' parent links, which the pickle keeps). Plain dicts (dnnlib.EasyDict) are read too."""

    def __init__(self, node: Any) -> None:
        self.node = node

    def get(self, dotted: str, default: Any = None) -> Any:
        node = self.node
        for key in dotted.split("."):
            node = self._child(self._resolved(node), key)
            if node is _MISSING:
                return default
        value = self._resolved(node)
        return self._plain(value)

    @staticmethod
    def _state(node: Any) -> dict[str, Any]:
        return node.state if isinstance(node, Record) and isinstance(node.state, dict) else {}

    def _root(self) -> Any:
        node = self.node
        while self._state(node).get("_parent") is not None:
            node = self._state(node)["_parent"]
        return node

    def _resolved(self, node: Any, depth: int = 0) -> Any:
        """A value node's value, or the node an interpolation points to (followed up to 16 times)."""
        if isinstance(node, Record) and "_val" in self._state(node):
            node = self._state(node)["_val"]
        if isinstance(node, str) and (match := _INTERPOLATION.match(node)):
            if depth > 16:
                raise ValueError(f"interpolation loop at {node}")
            target = self._root()
            for key in match.group(1).split("."):
                target = self._child(target, key)
                if target is _MISSING:
                    raise ValueError(f"the interpolation {node} points nowhere")
            return self._resolved(target, depth + 1)
        return node

    def _child(self, node: Any, key: str) -> Any:
        if isinstance(node, Mapping):
            return node.get(key, _MISSING)
        content = self._state(node).get("_content")
        if isinstance(content, Mapping):
            return content.get(key, _MISSING)
        return _MISSING

    def _plain(self, value: Any) -> Any:
        if isinstance(value, Record):
            content = self._state(value).get("_content")
            if isinstance(content, Mapping):
                return {k: self._plain(self._resolved(v)) for k, v in content.items()}
            if isinstance(content, list):
                return [self._plain(self._resolved(v)) for v in content]
            return content
        return value


_MISSING = object()
