"""Reading weight files safely: safetensors, or torch checkpoints with ``weights_only=True``.

Every failure becomes a :class:`ModelLoadError` whose message names the file and says what is
wrong and what to do, so the CLI can print one line instead of a traceback.
"""

from __future__ import annotations

import hashlib
import pickle
import warnings
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

from loguru import logger

if TYPE_CHECKING:  # pragma: no cover
    import torch

# keys under which training scripts commonly nest the state_dict in a checkpoint dict
_NESTED_KEYS = ("state_dict", "model_state_dict", "model", "state_dict_ema", "model_ema")
_PREFIXES = ("module.", "_orig_mod.")  # DataParallel / torch.compile wrappers


class ModelLoadError(ValueError):
    """A model file, folder or architecture that cannot be used. The message names the file."""


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def read_state_dict(path: str | Path) -> dict[str, "torch.Tensor"]:
    """Tensors from a ``.safetensors`` file or a torch checkpoint (``.pth``/``.pt``/``.bin``).

    Torch files load with ``weights_only=True``: a pickle that carries code or arbitrary
    Python objects is refused. A checkpoint dict that nests the weights (``state_dict``,
    ``model``...) is unwrapped, and ``module.`` prefixes from DataParallel are stripped.
    """
    p = Path(path)
    if not p.is_file():
        raise ModelLoadError(f"{p}: weights file not found")
    if p.stat().st_size == 0:
        raise ModelLoadError(f"{p}: weights file is empty (0 bytes); copy it again")
    if p.suffix == ".safetensors" or _looks_like_safetensors(p):
        state = _read_safetensors(p)
    else:
        state = _read_torch(p)
    return _strip_prefixes(state)


def _looks_like_safetensors(p: Path) -> bool:
    with open(p, "rb") as f:
        head = f.read(9)
    return len(head) == 9 and head[8:9] == b"{"


def _read_safetensors(p: Path) -> dict[str, "torch.Tensor"]:
    from safetensors.torch import load_file

    try:
        return load_file(str(p), device="cpu")
    except Exception as exc:  # SafetensorError, OSError, ...
        raise ModelLoadError(f"{p}: not a readable safetensors file ({exc}); it may be truncated "
                             f"or corrupt - copy or export it again") from None


def _read_torch(p: Path) -> dict[str, "torch.Tensor"]:
    import torch

    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            obj = torch.load(str(p), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelLoadError(
            f"{p}: refused to load: the checkpoint holds Python objects, not just tensors, and a "
            f"pickle can run code (weights_only=True: {first}). Re-save it as a plain state_dict "
            f"(torch.save(model.state_dict(), ...)) or as safetensors") from None
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile, IndexError, KeyError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelLoadError(f"{p}: not a readable torch checkpoint ({first}); it may be truncated "
                             f"or corrupt - copy it again") from None
    return _unwrap(obj, p)


def _unwrap(obj: Any, p: Path) -> dict[str, "torch.Tensor"]:
    import torch

    for _ in range(3):
        if isinstance(obj, Mapping) and obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
            return dict(obj)
        if isinstance(obj, Mapping):
            nested = next((obj[k] for k in _NESTED_KEYS if k in obj and isinstance(obj[k], Mapping)), None)
            if nested is not None:
                obj = nested
                continue
            tensors = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
            if tensors and len(tensors) >= len(obj) // 2:
                logger.debug("{}: ignoring {} non-tensor entries", p, len(obj) - len(tensors))
                return tensors
        break
    raise ModelLoadError(f"{p}: no state_dict found (got {type(obj).__name__}); expected a dict of "
                         f"tensors, optionally under one of {', '.join(_NESTED_KEYS)}")


def _strip_prefixes(state: dict[str, "torch.Tensor"]) -> dict[str, "torch.Tensor"]:
    for prefix in _PREFIXES:
        if state and all(k.startswith(prefix) for k in state):
            state = {k[len(prefix):]: v for k, v in state.items()}
    return state


def load_state_dict_into(model: "torch.nn.Module", state: Mapping[str, "torch.Tensor"], source: str | Path,
                         reset_head: bool = False) -> None:
    """Load ``state`` into ``model`` strictly; on mismatch raise an error naming ``source``.

    With ``reset_head`` the classifier weights may differ in shape (a backbone trained for
    another class count): those keys are skipped and the model keeps its fresh head.
    """
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    wrong = [k for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    if reset_head and (missing or unexpected or wrong):
        head = _head_keys(model)
        if head and set(wrong) | set(missing) <= head:
            logger.info("{}: classifier head does not match ({}); keeping a freshly initialised head",
                        source, ", ".join(sorted(set(wrong) | set(missing))))
            state = {k: v for k, v in state.items() if k not in head and k not in unexpected}
            state.update({k: own[k] for k in head})
            missing, unexpected, wrong = [], [], []
    if missing or unexpected or wrong:
        parts = []
        if wrong:
            parts.append("shape mismatch: " + "; ".join(
                f"{k} file {tuple(state[k].shape)} vs model {tuple(own[k].shape)}" for k in wrong[:3]))
        if missing:
            parts.append(f"{len(missing)} missing key(s), e.g. {missing[:3]}")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected key(s), e.g. {unexpected[:3]}")
        arch = getattr(model, "pretrained_cfg", {}).get("architecture", type(model).__name__)
        raise ModelLoadError(f"{source}: weights do not fit architecture {arch!r}: " + " | ".join(parts)
                             + ". Check the architecture name and the number of classes")
    model.load_state_dict({k: v.to(own[k].dtype) for k, v in state.items()}, strict=True)


def _head_keys(model: "torch.nn.Module") -> set[str]:
    name = getattr(model, "pretrained_cfg", {}).get("classifier")
    if not name:
        return set()
    names = [name] if isinstance(name, str) else list(name)
    return {k for k in model.state_dict() for n in names if k.startswith(n + ".")}
