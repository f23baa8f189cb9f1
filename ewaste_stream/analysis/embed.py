"""Penultimate features and their 2-D maps (PCA -> t-SNE; UMAP when ``umap-learn`` is installed).

Features come from timm's ``forward_features`` + ``forward_head(pre_logits=True)``, i.e. the
vector the classifier's last linear layer sees; the same pass gives the logits. Models that are
not timm models fall back to the input of their last ``nn.Linear``.
"""

from __future__ import annotations

from typing import Iterator

import numpy as np
from loguru import logger

import torch
from torch import nn


def _last_linear(model: nn.Module) -> nn.Linear:
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ValueError(f"{type(model).__name__}: no forward_head and no nn.Linear; cannot find penultimate features")
    return linears[-1]


@torch.no_grad()
def features_and_logits(model: nn.Module, x: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Penultimate features [B, D] and logits [B, C] for one batch."""
    model.eval()
    if hasattr(model, "forward_features") and hasattr(model, "forward_head"):
        feats = model.forward_features(x)
        pre = model.forward_head(feats, pre_logits=True)
        logits = model.forward_head(feats)
        return pre.flatten(1).float().numpy(), logits.float().numpy()
    captured: list[torch.Tensor] = []
    handle = _last_linear(model).register_forward_pre_hook(lambda _m, inp: captured.append(inp[0]))
    try:
        logits = model(x)
    finally:
        handle.remove()
    return captured[-1].flatten(1).float().numpy(), logits.float().numpy()


def batched(n: int, size: int) -> Iterator[slice]:
    for start in range(0, n, size):
        yield slice(start, min(n, start + size))


def pca(x: np.ndarray, dims: int = 50, seed: int = 0) -> np.ndarray:
    from sklearn.decomposition import PCA

    k = min(dims, x.shape[0], x.shape[1])
    return PCA(n_components=k, random_state=seed).fit_transform(x)


def tsne_2d(x: np.ndarray, seed: int = 0) -> np.ndarray:
    """PCA (-> 50) then t-SNE to 2-D; perplexity adapted to small sets."""
    from sklearn.manifold import TSNE

    if x.shape[0] < 5:
        raise ValueError(f"t-SNE needs at least 5 points, got {x.shape[0]}")
    reduced = pca(x, 50, seed)
    perplexity = float(min(30.0, max(2.0, (x.shape[0] - 1) / 3)))
    return TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed,
                max_iter=1000).fit_transform(reduced)


def umap_2d(x: np.ndarray, seed: int = 0) -> np.ndarray | None:
    """UMAP to 2-D, or None when ``umap-learn`` is not installed (optional extra)."""
    try:
        import umap  # type: ignore[import-not-found]
    except ImportError:
        logger.info("umap-learn not installed: skipping the UMAP map (pip install umap-learn)")
        return None
    n_neighbors = int(min(15, max(2, x.shape[0] - 1)))
    return umap.UMAP(n_components=2, n_neighbors=n_neighbors, random_state=seed).fit_transform(pca(x, 50, seed))


def embedding_maps(x: np.ndarray, seed: int = 0) -> dict[str, np.ndarray]:
    """{"t-SNE": [N, 2], "UMAP": [N, 2] (when available)}."""
    maps = {"t-SNE": tsne_2d(x, seed)}
    u = umap_2d(x, seed)
    if u is not None:
        maps["UMAP"] = u
    return maps
