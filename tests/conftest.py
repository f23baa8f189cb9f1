"""Shared test hooks: tests marked ``gpu`` skip themselves, with the reason, when there is no CUDA."""

from __future__ import annotations

import pytest


def _no_cuda_reason() -> str | None:
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency
        return "gpu test: torch is not installed"
    if not torch.cuda.is_available():
        return "gpu test: no CUDA device here (torch.cuda.is_available() is False); run tools/gpu_check.sh on a GPU"
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    gpu_items = [item for item in items if item.get_closest_marker("gpu") is not None]
    if not gpu_items:
        return  # torch is not even imported when no gpu test was collected
    reason = _no_cuda_reason()
    if reason:
        for item in gpu_items:
            item.add_marker(pytest.mark.skip(reason=reason))
