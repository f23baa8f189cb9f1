"""``ewaste_small_cnn``: a small plain CNN baseline, registered in timm's model registry so
that ``create_model`` (and ``timm.create_model``) build it like any other architecture.

About 0.3 M parameters: a sanity baseline for the real models, and quick enough for tests.
"""

from __future__ import annotations

import torch
from torch import nn
from timm.models import build_model_with_cfg, register_model

__all__: list[str] = []


def _cfg(**kwargs):
    return {"url": "", "num_classes": 1000, "input_size": (3, 224, 224), "pool_size": (7, 7),
            "crop_pct": 1.0, "interpolation": "bilinear", "mean": (0.485, 0.456, 0.406),
            "std": (0.229, 0.224, 0.225), "first_conv": "stem.0", "classifier": "classifier", **kwargs}


default_cfgs = {"ewaste_small_cnn": _cfg()}


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
        nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
    )


class SmallCNN(nn.Module):
    """Stem + four stride-2 double-conv stages + global average pool + linear head.
    Implements the timm classifier interface (``forward_features``, ``forward_head``,
    ``get_classifier``, ``reset_classifier``)."""

    def __init__(self, num_classes: int = 1000, in_chans: int = 3, widths: tuple[int, ...] = (24, 48, 96, 192),
                 drop_rate: float = 0.0, **_: object) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.stem = nn.Sequential(nn.Conv2d(in_chans, widths[0], 3, stride=2, padding=1, bias=False),
                                  nn.BatchNorm2d(widths[0]), nn.ReLU(inplace=True))
        chans = [widths[0], *widths]
        self.stages = nn.Sequential(*[_block(a, b) for a, b in zip(chans[:-1], chans[1:])])
        self.num_features = self.head_hidden_size = widths[-1]
        self.global_pool = nn.AdaptiveAvgPool2d(1)
        self.drop = nn.Dropout(drop_rate)
        self.classifier = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.stages(self.stem(x))

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.drop(self.global_pool(x).flatten(1))
        return x if pre_logits else self.classifier(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def get_classifier(self) -> nn.Module:
        return self.classifier

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        self.num_classes = num_classes
        self.classifier = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()


@register_model
def ewaste_small_cnn(pretrained: bool = False, **kwargs) -> SmallCNN:
    """Small plain CNN baseline (no pretrained weights exist; ``pretrained`` must be False)."""
    if pretrained:
        raise ValueError("ewaste_small_cnn has no pretrained weights; train it from scratch")
    return build_model_with_cfg(SmallCNN, "ewaste_small_cnn", pretrained=False, **kwargs)


def tiny_model_folder(out_dir, class_names: tuple[str, ...] | None = None, input_size: int = 32, seed: int = 0,
                      export_onnx: bool = True, weights_dtype: str = "float32", temperature: float = 1.0):
    """A random-weight ``ewaste_small_cnn`` model folder with narrow layers and a small input:
    a real (if meaningless) classifier for tests and demos that loads in milliseconds."""
    from ewaste_stream import CLASS_NAMES

    from .factory import create_model
    from .folder import ModelInfo, save_model_folder

    names = tuple(class_names or CLASS_NAMES)
    widths = [8, 16, 24, 32]
    with torch.random.fork_rng(devices=[]):  # seeded without disturbing the caller's RNG
        torch.manual_seed(seed)
        model = create_model("ewaste_small_cnn", len(names), widths=tuple(widths))
    info = ModelInfo.for_model(model, "tiny-test-cnn", names, input_size=input_size, arch_kwargs={"widths": widths},
                               weights_dtype=weights_dtype, temperature=temperature,
                               data={"note": "random weights, for tests only"})
    return save_model_folder(out_dir, model, info, export_onnx=export_onnx)
