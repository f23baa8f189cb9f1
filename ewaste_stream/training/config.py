"""The training recipe as one validated object: defaults < YAML (``--config``) < flags.

Every knob of the reference recipe is a field here, so it is a YAML key and a CLI flag
(``--lr``, ``--input-size`` ...). The resolved config is saved next to the outputs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator


class ConfigError(ValueError):
    """A bad training config; the message names the key/file and what to fix."""


class TrainConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    data: str = Field(description="dataset root holding train/<Class>/ and val/<Class>/")
    out: str = Field(description="model folder to write (weights + model.json)")
    work_dir: str | None = Field(None, description="checkpoints/logs (default: runs/<out name>)")
    arch: str = "tf_efficientnet_lite0"
    pretrained: str | None = Field("lite0-offline", description="none | timm | lite0-offline | PATH")
    name: str | None = Field(None, description="model name in model.json (default: out folder name)")
    input_size: int = Field(224, ge=32, le=1024)
    epochs: int = Field(15, ge=1, le=1000)
    batch_size: int = Field(32, ge=1, le=4096)
    lr: float = Field(3e-4, gt=0, le=1.0)
    weight_decay: float = Field(0.05, ge=0, le=1.0)
    t0: int = Field(10, ge=1, description="CosineAnnealingWarmRestarts T_0 (epochs)")
    t_mult: int = Field(2, ge=1)
    eta_min: float = Field(1e-6, ge=0)
    label_smoothing: float = Field(0.1, ge=0, lt=1)
    grad_clip: float = Field(1.0, ge=0, description="max grad norm; 0 = off")
    amp: bool = Field(True, description="mixed precision (CUDA only)")
    seed: int = 42
    drop_rate: float = Field(0.1, ge=0, lt=1)
    drop_path_rate: float = Field(0.1, ge=0, lt=1)
    head_epochs: int = Field(2, ge=0, description="phase 1: classifier head only")
    partial_epochs: int = Field(4, ge=0, description="phase 2: head + later backbone stages")
    partial_fraction: float = Field(0.5, gt=0, le=1, description="share of backbone tensors (latest first) trained in phase 2")
    frozen_fraction: float = Field(0.0, ge=0, lt=1, description="share of backbone tensors (earliest first) never trained (CPU budget)")
    phase_lr_scale: tuple[float, float, float] = (1.0, 0.5, 0.25)
    backbone_lr_scale: float = Field(0.5, gt=0, le=1, description="backbone LR = lr x this x phase scale")
    belt_mix: float = Field(0.5, ge=0, le=1, description="share of training samples rendered as belt crops")
    belt_bank: int = Field(2, ge=0, le=32, description="belt crops pre-rendered per train photo (cached, reused "
                           "with flips); 0 = render every belt sample on the fly in the loader workers")
    cache_dir: str | None = Field("runs/cache", description="where rendered belt crops are cached (none: no cache)")
    rot90: bool = Field(True, description="random 90-degree rotations of photos")
    val_belt_per_photo: int = Field(3, ge=0, le=20, description="belt crops rendered per val photo")
    belt_seed: int = Field(20261127, description="seed of the deterministic belt-crop eval set")
    ema_decay: float = Field(0.0, ge=0, lt=1, description="keep an exponential moving average of the weights (timm "
                             "ModelEmaV3, updated every step); it is validated, selected and shipped instead of the "
                             "raw weights. 0 = off; 0.998 averages about the last 500 steps")
    select_on: Literal["mean", "photo", "belt"] = Field("mean", description="best checkpoint by leak-free val: photo, belt or their mean")
    max_train_images: int | None = Field(None, ge=1, description="use only the first N train images per epoch (smoke tests)")
    max_val_images: int | None = Field(None, ge=1)
    workers: int = Field(1, ge=0, le=64)
    threads: int = Field(2, ge=1, le=256)
    device: str = "auto"
    checkpoint_every: int = Field(5, ge=1)
    resume: str | None = Field(None, description="full training state to resume from (PATH or 'auto')")
    export_onnx: bool = True
    weights_dtype: Literal["float32", "float16"] = "float16"

    @model_validator(mode="after")
    def _phases(self) -> "TrainConfig":
        if min(self.phase_lr_scale) <= 0:
            raise ValueError("phase_lr_scale values must be > 0")
        return self

    def resolved_work_dir(self) -> Path:
        return Path(self.work_dir) if self.work_dir else Path("runs") / Path(self.out).name

    def model_name(self) -> str:
        return self.name or Path(self.out).name

    def phase(self, epoch: int) -> int:
        """0 head only, 1 head + later stages, 2 everything (minus ``frozen_fraction``)."""
        if epoch < self.head_epochs:
            return 0
        if epoch < self.head_epochs + self.partial_epochs:
            return 1
        return 2


def load_yaml(path: str | Path) -> dict[str, Any]:
    import yaml

    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"--config {p}: file not found")
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{p}: not valid YAML ({exc})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: must hold a mapping of recipe keys, got {type(data).__name__}")
    return {str(k).replace("-", "_"): v for k, v in data.items()}


def resolve(flags: dict[str, Any], yaml_path: str | Path | None = None) -> TrainConfig:
    """defaults < YAML < flags (flags that are None were not given)."""
    merged = load_yaml(yaml_path) if yaml_path else {}
    merged.update({k: v for k, v in flags.items() if v is not None})
    for key in ("pretrained", "cache_dir", "resume", "work_dir"):
        if isinstance(merged.get(key), str) and merged[key].lower() == "none":
            merged[key] = None
    try:
        return TrainConfig(**merged)
    except ValidationError as exc:
        src = f" (from {yaml_path} or flags)" if yaml_path else ""
        lines = [f"  {'.'.join(str(x) for x in e['loc']) or '(top level)'}: {e['msg']}" for e in exc.errors()]
        raise ConfigError("invalid training config" + src + ":\n" + "\n".join(lines)) from None


def save_resolved(cfg: TrainConfig, path: str | Path) -> Path:
    import yaml

    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False), encoding="utf-8")
    return p
