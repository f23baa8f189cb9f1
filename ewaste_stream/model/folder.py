"""Model folders: weights (safetensors and/or ONNX) + ``model.json``.

``model.json`` is the single source of truth for how a model is used: timm architecture,
class names in order, input size, mean/std, interpolation, temperature (calibration),
the sha256 of every weights file (checked at load), the data it was trained on and its
measured metrics. Preprocessing reads it; nothing else hard-codes mean/std.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from loguru import logger
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .weights import ModelLoadError, load_state_dict_into, read_state_dict, sha256_file

if TYPE_CHECKING:  # pragma: no cover
    import torch

MODEL_JSON = "model.json"
WEIGHT_FILES = {"safetensors": "model.safetensors", "onnx": "model.onnx", "onnx_int8": "model.int8.onnx"}
Interpolation = Literal["nearest", "bilinear", "bicubic", "area", "lanczos"]


class ModelInfo(BaseModel):
    """The contents of ``model.json`` (frozen, validated; unknown keys rejected)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    format: Literal[1] = 1  # model.json schema version
    name: str = Field(min_length=1)
    arch: str = Field(min_length=1)  # timm architecture name
    arch_kwargs: dict[str, Any] = Field(default_factory=dict)  # extra create_model kwargs
    class_names: tuple[str, ...] = Field(min_length=2)
    input_size: int = Field(224, ge=16, le=2048)  # square side in px
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)  # RGB, 0..1 scale
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    interpolation: Interpolation = "bilinear"
    temperature: float = Field(1.0, gt=0, le=100)  # probs = softmax(logits / temperature)
    # the int8 graph's own temperature (its logits are scaled a little differently); None: temperature
    int8_temperature: float | None = Field(None, gt=0, le=100)
    version: str = "0"
    weights: dict[str, str] = Field(default_factory=dict)  # format -> file name in the folder
    weights_dtype: Literal["float32", "float16"] = "float32"  # storage dtype of the safetensors
    sha256: dict[str, str] = Field(default_factory=dict)  # format -> sha256 hex of that file
    data: dict[str, Any] = Field(default_factory=dict)  # what it was trained / evaluated on
    metrics: dict[str, Any] = Field(default_factory=dict)
    created: str = ""  # ISO 8601, UTC

    @field_validator("class_names")
    @classmethod
    def _unique(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        if len(set(v)) != len(v) or any(not c for c in v):
            raise ValueError("class names must be unique and non-empty")
        return v

    @field_validator("std")
    @classmethod
    def _positive(cls, v: tuple[float, float, float]) -> tuple[float, float, float]:
        if min(v) <= 0:
            raise ValueError("std values must be > 0")
        return v

    @model_validator(mode="after")
    def _weights(self) -> "ModelInfo":
        for fmt, fname in self.weights.items():
            if fmt not in WEIGHT_FILES:
                raise ValueError(f"weights: unknown format {fmt!r} (known: {', '.join(WEIGHT_FILES)})")
            if not fname or Path(fname).name != fname:
                raise ValueError(f"weights.{fmt}: {fname!r} must be a plain file name inside the folder")
        return self

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def fingerprint(self) -> str:
        """sha256 identifying what the model computes: weights hashes + preprocessing + classes
        + temperature. The same for every backend; goes on the wire as ``model.sha256``."""
        keys = ("arch", "arch_kwargs", "class_names", "input_size", "mean", "std", "interpolation",
                "temperature", "sha256")
        blob = json.dumps(self.model_dump(mode="json", include=set(keys)), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()

    @classmethod
    def for_model(cls, model: "torch.nn.Module", name: str, class_names: tuple[str, ...] | list[str],
                  **fields: Any) -> "ModelInfo":
        """Defaults from the timm model's ``pretrained_cfg`` (arch, mean/std, interpolation,
        input size); ``fields`` override them."""
        cfg = dict(getattr(model, "pretrained_cfg", None) or {})
        base: dict[str, Any] = {"name": name, "class_names": tuple(class_names)}
        if cfg.get("architecture"):
            base["arch"] = cfg["architecture"]
        for key in ("mean", "std"):
            if cfg.get(key) and len(cfg[key]) == 3:
                base[key] = tuple(cfg[key])
        if cfg.get("interpolation") in ("nearest", "bilinear", "bicubic"):
            base["interpolation"] = cfg["interpolation"]
        if cfg.get("input_size"):
            base["input_size"] = int(cfg["input_size"][-1])
        return cls(**{**base, **fields})


def load_model_info(model_dir: str | Path) -> ModelInfo:
    """Read and validate ``model.json`` (``model_dir`` may also be the json file itself)."""
    d = Path(model_dir)
    path = d if d.suffix == ".json" else d / MODEL_JSON
    if not d.exists():
        raise ModelLoadError(f"{d}: model folder not found (pass --model DIR, a folder holding {MODEL_JSON})")
    if not path.is_file():
        raise ModelLoadError(f"{path}: missing; a model folder holds {MODEL_JSON} + weights "
                             f"(create one with save_model_folder / `ewaste-stream train`)")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelLoadError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise ModelLoadError(f"{path}: must hold a JSON object, got {type(data).__name__}")
    try:
        return ModelInfo.model_validate(data)
    except ValidationError as exc:
        lines = [f"  {'.'.join(str(x) for x in e['loc']) or '(top level)'}: {e['msg']}" for e in exc.errors()]
        raise ModelLoadError(f"{path}: invalid model description\n" + "\n".join(lines)) from None


def weights_path(model_dir: str | Path, info: ModelInfo, fmt: str, verify: bool = True) -> Path:
    """Path of the ``fmt`` weights file, checked to exist and to match its recorded sha256."""
    d = Path(model_dir)
    if d.suffix == ".json":
        d = d.parent
    if fmt not in info.weights:
        have = ", ".join(info.weights) or "none"
        raise ModelLoadError(f"{d / MODEL_JSON}: no {fmt} weights in this model folder (has: {have})")
    p = d / info.weights[fmt]
    if not p.is_file():
        raise ModelLoadError(f"{p}: weights file listed in {MODEL_JSON} is missing; copy the whole folder")
    expected = info.sha256.get(fmt)
    if verify and expected:
        got = sha256_file(p)
        if got != expected:
            raise ModelLoadError(f"{p}: sha256 mismatch (expected {expected[:12]}..., file has {got[:12]}...): "
                                 f"the file is corrupt, truncated or was replaced; copy the model folder again")
    elif verify:
        logger.warning("{}: no sha256 recorded in {}; integrity not checked", p, MODEL_JSON)
    return p


def load_torch_model(model_dir: str | Path, device: str = "cpu") -> tuple["torch.nn.Module", ModelInfo]:
    """Build the timm model from ``model.json`` and load its safetensors (fp16 stored -> fp32)."""
    from .factory import create_model

    info = load_model_info(model_dir)
    path = weights_path(model_dir, info, "safetensors")
    model = create_model(info.arch, info.num_classes, **info.arch_kwargs)
    state = {k: (v.float() if v.is_floating_point() else v) for k, v in read_state_dict(path).items()}
    load_state_dict_into(model, state, path)
    return model.to(device).eval(), info


def save_model_folder(out_dir: str | Path, model: "torch.nn.Module", info: ModelInfo,
                      export_onnx: bool = True) -> Path:
    """Write safetensors (dtype ``info.weights_dtype``) + optionally ONNX + ``model.json``.

    The caller's model is not modified. With float16 storage the weights are rounded to
    fp16 *before* the ONNX export, so both files describe exactly the same function. The
    ONNX file is verified against torch right after export. Returns the folder.
    """
    import torch
    from safetensors.torch import save_file

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    m = copy.deepcopy(model).to("cpu").float().eval()
    dtype = torch.float16 if info.weights_dtype == "float16" else torch.float32
    state = {k: (v.detach().to(dtype) if v.is_floating_point() else v.detach()).contiguous().clone()
             for k, v in m.state_dict().items()}
    if dtype != torch.float32:
        m.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()})
    _check_outputs(m, info)
    files = {"safetensors": WEIGHT_FILES["safetensors"]}
    _atomic(out / files["safetensors"], lambda p: save_file(state, str(p), metadata={"arch": info.arch}))
    if export_onnx:
        from .onnx_export import export_onnx as _export

        files["onnx"] = WEIGHT_FILES["onnx"]
        _atomic(out / files["onnx"], lambda p: _export(m, p, info.input_size))
    shas = {fmt: sha256_file(out / f) for fmt, f in files.items()}
    created = info.created or datetime.now(timezone.utc).isoformat(timespec="seconds")
    fields = {**info.model_dump(), "weights": files, "sha256": shas, "created": created}
    drop_int8(out, fields)  # an int8 graph of other weights: gone (re-quantize)
    write_model_info(out, ModelInfo.model_validate(fields))
    logger.info("saved model folder {} ({}; {})", out, ", ".join(files.values()), info.weights_dtype)
    return out


def drop_int8(model_dir: Path, fields: dict[str, Any]) -> bool:
    """Remove the int8 graph from ``fields`` (a ``model.json`` dict being rewritten because the
    weights it was quantized from are replaced): its weights and sha256 entries, ``metrics.int8``
    and ``int8_temperature``, and delete its file. True when ``model.json`` listed one."""
    weights = dict(fields.get("weights") or {})
    listed = "onnx_int8" in weights
    path = Path(model_dir) / weights.pop("onnx_int8", WEIGHT_FILES["onnx_int8"])
    fields["weights"] = weights
    fields["sha256"] = {k: v for k, v in (fields.get("sha256") or {}).items() if k != "onnx_int8"}
    fields["metrics"] = {k: v for k, v in (fields.get("metrics") or {}).items() if k != "int8"}
    fields["int8_temperature"] = None
    if path.exists():
        path.unlink()
    return listed


def write_model_info(model_dir: str | Path, info: ModelInfo) -> Path:
    """(Re)write ``model.json`` atomically, e.g. after fitting a temperature."""
    path = Path(model_dir) / MODEL_JSON
    text = json.dumps(info.model_dump(mode="json"), indent=2) + "\n"
    _atomic(path, lambda p: p.write_text(text, encoding="utf-8"))
    return path


def _check_outputs(model: "torch.nn.Module", info: ModelInfo) -> None:
    import torch

    with torch.inference_mode():
        out = model(torch.zeros(1, 3, info.input_size, info.input_size))
    if tuple(out.shape) != (1, info.num_classes):
        raise ModelLoadError(f"model outputs {tuple(out.shape)[1:]} values per image but model.json lists "
                             f"{info.num_classes} class names; they must match")


def _atomic(path: Path, write) -> None:
    tmp = path.with_name(path.name + ".tmp")
    try:
        write(tmp)
        os.chmod(tmp, 0o644)  # some writers create 0600 files; a daemon user must read the model
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
