"""Classifier: model folders, timm factory, backends.

Names are imported lazily so that ``from ewaste_stream.model.base import Classifier``
does not pull in torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "Classifier": "base",
    "ModelInfo": "folder",
    "save_model_folder": "folder",
    "load_model_info": "folder",
    "load_torch_model": "folder",
    "write_model_info": "folder",
    "weights_path": "folder",
    "ModelLoadError": "weights",
    "read_state_dict": "weights",
    "preprocess": "preprocessing",
    "create_model": "factory",
    "SUPPORTED_ARCHS": "factory",
    "import_checkpoint": "factory",
    "export_onnx": "onnx_export",
    "load_classifier": "backends",
    "OrtClassifier": "backends",
    "TorchClassifier": "backends",
    "AccelOptions": "cuda",
    "CudaTorchClassifier": "cuda",
    "DevicePreprocessor": "gpu_preprocess",
    "self_check": "selfcheck",
    "classifier_from_config": "selfcheck",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
