"""Grad-CAM for the classifier: CNNs (EfficientNet, ConvNeXt, RegNet, ResNet, a custom CNN),
MaxViT (its last stage's output is NCHW in timm) and ViT (tokens reshaped to a grid).

Grad-CAM (Selvaraju et al. 2017): for a target layer with activations A [C, h, w] and the
gradient G of the class score w.r.t. A, the channel weights are the spatial mean of G; the map
is ReLU(sum_c w_c A_c), upsampled to the input and normalised to 0..1 per image.

The target layer comes from a small per-architecture table, else timm's last
``feature_info`` stage, else the last module that produces a 4-D map with spatial extent (the
features just before the pooling head); it can be overridden by name (see
``model.named_modules()``).
"""

from __future__ import annotations

import difflib
from typing import Callable

import numpy as np
from loguru import logger

import torch
import torch.nn.functional as F
from torch import nn


class TargetLayerError(ValueError):
    """The requested target layer does not exist or cannot be used for Grad-CAM."""


def _vit_last_block(model: nn.Module) -> str:
    return f"blocks.{len(model.blocks) - 1}.norm1"  # type: ignore[arg-type]


# model class name (timm) -> target layer name (or a function of the model giving it)
TARGET_LAYERS: dict[str, str | Callable[[nn.Module], str]] = {
    "EfficientNet": "bn2",  # conv_head -> BN + activation: the last feature map
    "MobileNetV3": "blocks",
    "ConvNeXt": "stages",
    "RegNet": "s4",
    "ResNet": "layer4",
    "MaxxVit": "stages",  # MaxViT: the last stage's output is NCHW
    "VisionTransformer": _vit_last_block,
}
# containers in the table whose last child is the real target ("stages" -> "stages.3")
_LAST_CHILD = {"stages", "blocks"}


def _last_child(model: nn.Module, name: str) -> str:
    mod = model.get_submodule(name)
    children = list(mod.named_children())
    return f"{name}.{children[-1][0]}" if children else name


def auto_target_layer(model: nn.Module, input_size: int = 64) -> str:
    """The last module (in execution order) whose output is a 4-D map with more than one cell;
    modules whose map is 1x1 (global pooling) are skipped. Raises if the model has none."""
    order: list[tuple[str, tuple[int, ...]]] = []
    hooks = []
    for name, mod in model.named_modules():
        if not name:
            continue
        hooks.append(mod.register_forward_hook(
            lambda m, i, o, n=name: order.append((n, tuple(o.shape))) if torch.is_tensor(o) else None))
    first_conv = next((m for m in model.modules() if isinstance(m, nn.Conv2d)), None)
    channels = first_conv.in_channels if first_conv is not None else 3
    try:
        was_training = model.training
        model.eval()
        with torch.no_grad():
            model(torch.zeros(1, channels, input_size, input_size))
        model.train(was_training)
    finally:
        for h in hooks:
            h.remove()
    maps = [n for n, s in order if len(s) == 4 and s[2] * s[3] > 1]
    if not maps:
        raise TargetLayerError("no module of this model outputs a 4-D feature map; "
                               "pass --target-layer NAME (see model.named_modules())")
    return maps[-1]


def resolve_target_layer(model: nn.Module, name: str | None = None, input_size: int = 64) -> str:
    """Target layer for Grad-CAM: ``name`` if given (must exist), else the table, else auto."""
    names = [n for n, _ in model.named_modules() if n]
    if name:
        if name not in names:
            close = difflib.get_close_matches(name, names, n=8, cutoff=0.5) or names[-8:]
            raise TargetLayerError(f"target layer {name!r} is not a module of this "
                                   f"{type(model).__name__}; close names: {', '.join(close)}")
        return name
    entry = TARGET_LAYERS.get(type(model).__name__)
    if entry is not None:
        layer = entry(model) if callable(entry) else entry
        if layer in _LAST_CHILD and layer in names:
            layer = _last_child(model, layer)
        if layer in names:
            return layer
        logger.debug("table target {} missing in {}; falling back", layer, type(model).__name__)
    info = getattr(model, "feature_info", None)  # timm: the last feature stage
    if isinstance(info, list) and info and info[-1].get("module") in names:
        return str(info[-1]["module"])
    return auto_target_layer(model, input_size)


def _tokens_to_map(t: torch.Tensor, model: nn.Module) -> torch.Tensor:
    """[B, N, C] tokens (class/register tokens first, dropped) -> [B, C, h, w]."""
    n_prefix = int(getattr(model, "num_prefix_tokens", 1 if getattr(model, "cls_token", None) is not None else 0))
    patches = t[:, n_prefix:, :]
    side = int(round(patches.shape[1] ** 0.5))
    if side * side != patches.shape[1]:
        raise TargetLayerError(f"cannot reshape {patches.shape[1]} tokens to a square grid; "
                               "choose another --target-layer")
    return patches.transpose(1, 2).reshape(t.shape[0], t.shape[2], side, side)


class GradCAM:
    """Grad-CAM on one target layer. Use as a context manager (hooks are removed on exit)::

        with GradCAM(model, "bn2") as cam:
            maps, logits = cam(x, classes)   # maps float32 [B, H, W] in 0..1
    """

    def __init__(self, model: nn.Module, layer: str) -> None:
        self.model = model
        self.layer = resolve_target_layer(model, layer)
        self._acts: torch.Tensor | None = None
        self._handle = None

    def __enter__(self) -> "GradCAM":
        def hook(_m: nn.Module, _i: object, out: object) -> None:
            if torch.is_tensor(out):
                self._acts = out

        self._handle = self.model.get_submodule(self.layer).register_forward_hook(hook)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._handle is not None:
            self._handle.remove()
            self._handle = None

    def __call__(self, x: torch.Tensor, classes: torch.Tensor | list[int] | None = None
                 ) -> tuple[np.ndarray, np.ndarray]:
        """Maps for ``classes`` (default: each image's predicted class) and the logits."""
        self.model.eval()
        self.model.zero_grad(set_to_none=True)
        x = x.detach().clone().requires_grad_(True)  # a graph even when the weights are frozen
        with torch.enable_grad():
            logits = self.model(x)
            if classes is None:
                classes = logits.argmax(1)
            idx = torch.as_tensor(classes, dtype=torch.long).view(-1, 1)
            acts = self._acts
            if acts is None:
                raise TargetLayerError(f"target layer {self.layer!r} was not run by the forward pass")
            score = logits.gather(1, idx).sum()
            grads = torch.autograd.grad(score, acts)[0]
        cam = _cam_from(acts.detach(), grads.detach(), self.model)
        cam = F.interpolate(cam[:, None], size=x.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
        return normalise_maps(cam.numpy()), logits.detach().numpy()


def _cam_from(acts: torch.Tensor, grads: torch.Tensor, model: nn.Module) -> torch.Tensor:
    if acts.ndim == 3:  # ViT tokens
        acts, grads = _tokens_to_map(acts, model), _tokens_to_map(grads, model)
    if acts.ndim != 4:
        raise TargetLayerError(f"Grad-CAM needs a 4-D map or [B, N, C] tokens, got shape {tuple(acts.shape)}")
    weights = grads.mean(dim=(2, 3), keepdim=True)
    return F.relu((weights * acts).sum(dim=1))


def normalise_maps(maps: np.ndarray) -> np.ndarray:
    """Per map: subtract the minimum, divide by the maximum (all-zero maps stay zero)."""
    maps = maps.astype(np.float32)
    lo = maps.min(axis=(1, 2), keepdims=True)
    maps = maps - lo
    hi = maps.max(axis=(1, 2), keepdims=True)
    return np.where(hi > 0, maps / np.maximum(hi, 1e-12), 0.0).astype(np.float32)


def overlay(rgb: np.ndarray, cam: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """Heatmap (0..1, any size) over an RGB uint8 image, JET colours; returns RGB uint8."""
    import cv2

    h, w = rgb.shape[:2]
    heat = cv2.resize(cam.astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR)
    colour = cv2.applyColorMap(np.clip(heat * 255, 0, 255).astype(np.uint8), cv2.COLORMAP_JET)
    colour = cv2.cvtColor(colour, cv2.COLOR_BGR2RGB)
    return cv2.addWeighted(rgb, 1 - alpha, colour, alpha, 0)


def mass_centre(cam: np.ndarray) -> tuple[float, float]:
    """(x, y) centre of mass of a heatmap as fractions 0..1 of its width and height."""
    total = float(cam.sum())
    if total <= 0:
        return 0.5, 0.5
    ys, xs = np.indices(cam.shape, dtype=np.float64)
    return float((cam * xs).sum() / total / max(cam.shape[1] - 1, 1)), \
        float((cam * ys).sum() / total / max(cam.shape[0] - 1, 1))
