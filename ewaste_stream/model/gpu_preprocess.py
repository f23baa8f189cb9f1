"""Preprocessing on the inference device: RGB uint8 crops -> normalised float32 [B, 3, S, S].

Same semantics as :func:`ewaste_stream.model.preprocess` (stretch each crop to S x S with
``model.json``'s interpolation, then ``(x / 255 - mean) / std``), but only uint8 pixels cross
the PCIe bus and the resize and normalisation run on the GPU:

1. the crops are packed into one reused (pinned, on CUDA) host buffer ``[B, H, W, 3]`` uint8,
   each crop top-left with its last row/column repeated into the padding (so sampling past
   a crop's edge sees the edge, as OpenCV's resize does);
2. one ``non_blocking`` copy to the device;
3. one ``grid_sample`` for the whole batch, with per-crop source coordinates computed the way
   ``cv2.resize`` computes them (half-pixel centres; ``floor(j * w / S)`` for nearest),
   rounded back to whole grey levels like OpenCV's uint8 output;
4. ``(x - 255 mean) / (255 std)`` on the device, optional ``channels_last`` and zero padding
   of the batch to a fixed size (for compiled models).

OpenCV resizes uint8 in fixed point, so a resized pixel may differ from ``preprocess`` by one
grey level (about 0.02 after normalisation); crops already S x S are bit-identical.
Interpolations ``grid_sample`` cannot do (``area``, ``lanczos``) and crops larger than
``max_side`` (bounding the host buffer) are resized on the host with OpenCV exactly as
``preprocess`` does, then travel as S x S crops.
"""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING, Sequence

import numpy as np

from .preprocessing import _CV2_INTERP, _check_crop

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from .folder import ModelInfo

GPU_INTERPOLATIONS = ("nearest", "bilinear", "bicubic")


@lru_cache(maxsize=4096)
def source_coords(n_src: int, size: int, mode: str) -> np.ndarray:
    """Source pixel coordinate (float64 [size]) that ``cv2.resize`` samples for each of the
    ``size`` output pixels along an axis of ``n_src`` input pixels. Read-only (cached)."""
    if mode not in GPU_INTERPOLATIONS:
        raise ValueError(f"interpolation {mode!r}: the device path supports {', '.join(GPU_INTERPOLATIONS)}")
    j = np.arange(size, dtype=np.float64)
    inv_scale = 1.0 / (size / n_src)  # as OpenCV: 1 / (dsize / ssize), in double
    if mode == "nearest":
        x = np.minimum(np.floor(j * inv_scale), n_src - 1)
    else:  # OpenCV rounds the centre-aligned coordinate to float32
        x = ((j + 0.5) * inv_scale - 0.5).astype(np.float32).astype(np.float64)
    x.flags.writeable = False
    return x


class _HostBuffer:
    """One growing uint8 staging buffer, pinned when the device is CUDA. ``ready`` waits until
    the previous asynchronous copy out of it has finished before it may be overwritten."""

    def __init__(self, pin: bool) -> None:
        self.pin = pin
        self._t: "torch.Tensor | None" = None
        self._event = None

    def get(self, shape: tuple[int, ...]) -> "torch.Tensor":
        import torch

        if self._event is not None:
            self._event.synchronize()
            self._event = None
        n = int(np.prod(shape))
        if self._t is None or self._t.numel() < n:
            self._t = torch.empty(int(n * 1.25) + 1, dtype=torch.uint8, pin_memory=self.pin)
        return self._t[:n].view(shape)

    def copied(self) -> None:
        """Call right after queueing the copy out of the buffer on the current CUDA stream."""
        if self.pin:
            import torch

            self._event = torch.cuda.Event()
            self._event.record()


class DevicePreprocessor:
    """``crops -> float32 [B, 3, S, S]`` tensor on ``device``; see the module doc.

    Not thread-safe (one reused host buffer): use it from one thread at a time, as the
    classifier does."""

    def __init__(self, info: "ModelInfo", device: str = "cuda", channels_last: bool = False,
                 max_side: int | None = None) -> None:
        import torch

        self.info = info
        self.size = int(info.input_size)
        self.device = torch.device(device)
        self.channels_last = bool(channels_last)
        self.max_side = int(max_side or 2 * self.size)
        if self.max_side < self.size:
            raise ValueError(f"max_side {self.max_side} must be >= the model input size {self.size}")
        self.mode = info.interpolation if info.interpolation in GPU_INTERPOLATIONS else None
        self._buf = _HostBuffer(pin=self.device.type == "cuda")
        self._shift = torch.tensor(info.mean, dtype=torch.float32).mul(255.0).view(1, 3, 1, 1).to(self.device)
        self._scale = torch.tensor(info.std, dtype=torch.float32).mul(255.0).view(1, 3, 1, 1).to(self.device)

    def __call__(self, crops: Sequence[np.ndarray], pad_to: int | None = None) -> "torch.Tensor":
        import torch

        if len(crops) == 0:
            raise ValueError("no crops to preprocess")
        if pad_to is not None and pad_to < len(crops):
            raise ValueError(f"pad_to={pad_to} is smaller than the batch ({len(crops)} crops)")
        arrays = [self._host_ready(c, i) for i, c in enumerate(crops)]
        sizes = np.array([a.shape[:2] for a in arrays], dtype=np.int64)
        canvas = self._pack(arrays, int(sizes[:, 0].max()), int(sizes[:, 1].max()))
        x = canvas.to(self.device, non_blocking=True)
        self._buf.copied()
        x = x.permute(0, 3, 1, 2).float()  # [B, 3, H, W]; channels_last in memory
        if (sizes != self.size).any():
            x = self._resize(x, sizes)
        x = x.sub_(self._shift).div_(self._scale)  # same operations, same order as preprocess
        if pad_to is not None and pad_to > len(arrays):
            x = torch.cat([x, x.new_zeros((pad_to - len(arrays), *x.shape[1:]))])
        fmt = torch.channels_last if self.channels_last else torch.contiguous_format
        return x.contiguous(memory_format=fmt)

    def _host_ready(self, crop: np.ndarray, i: int) -> np.ndarray:
        """Validated crop; resized on the host (exactly as ``preprocess``) when the device
        cannot do its interpolation or it is larger than ``max_side``."""
        a = _check_crop(crop, i)
        s = self.size
        if (a.shape[0], a.shape[1]) != (s, s) and (self.mode is None or max(a.shape[:2]) > self.max_side):
            import cv2

            a = cv2.resize(a, (s, s), interpolation=getattr(cv2, _CV2_INTERP[self.info.interpolation]))
        return a

    def _pack(self, arrays: list[np.ndarray], h: int, w: int) -> "torch.Tensor":
        canvas = self._buf.get((len(arrays), h, w, 3))
        c = canvas.numpy()
        for i, a in enumerate(arrays):
            ah, aw = a.shape[:2]
            c[i, :ah, :aw] = a
            if aw < w:
                c[i, :ah, aw:] = a[:, aw - 1:aw]
            if ah < h:
                c[i, ah:] = c[i, ah - 1:ah]
        return canvas

    def _resize(self, x: "torch.Tensor", sizes: np.ndarray) -> "torch.Tensor":
        import torch
        import torch.nn.functional as F

        _, _, h, w = x.shape
        s = self.size
        gx = np.stack([source_coords(int(n), s, self.mode) for n in sizes[:, 1]])
        gy = np.stack([source_coords(int(n), s, self.mode) for n in sizes[:, 0]])
        g = np.stack([(2.0 * gx + 1.0) / w - 1.0, (2.0 * gy + 1.0) / h - 1.0]).astype(np.float32)
        g = torch.from_numpy(g).to(self.device, non_blocking=False)  # [2, B, S]: tiny
        b = len(sizes)
        grid = torch.stack([g[0][:, None, :].expand(b, s, s), g[1][:, :, None].expand(b, s, s)], dim=-1)
        y = F.grid_sample(x, grid, mode=self.mode, padding_mode="border", align_corners=False)
        return y.add_(0.5).floor_().clamp_(0.0, 255.0)  # OpenCV's uint8 result: round half up, saturate
