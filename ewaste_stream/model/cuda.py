"""The production inference path: PyTorch on CUDA.

- preprocessing on the device from uint8 crops (:class:`DevicePreprocessor`: pinned host
  buffer, ``non_blocking`` copy, resize + normalise on the GPU);
- autocast in ``fp16`` or ``bf16`` (``precision``), optional ``channels_last``;
- optional ``torch.compile`` (``dynamic=False``) warmed up at start-up for every batch
  *bucket*: a batch is zero-padded up to the next bucket size (larger batches are split), so
  the compiled graphs seen at start-up are the only ones ever needed. After warm-up the
  compiler's stance is ``eager_on_recompile``: an unexpected shape runs eagerly instead of
  compiling mid-stream. With CUDA graphs (``compile_mode: reduce-overhead``) every call runs
  on one dedicated thread, because PyTorch keeps CUDA graph trees per thread.

Batching itself (max batch, latency cap) stays in the pipeline's batcher.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np
from loguru import logger

from .backends import TorchClassifier, calibrated_softmax
from .folder import ModelInfo, load_torch_model
from .weights import ModelLoadError

if TYPE_CHECKING:  # pragma: no cover
    import torch

PRECISIONS = ("auto", "fp32", "fp16", "bf16", "int8")  # int8: the ONNX backend only
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune-no-cudagraphs")
MAX_BUCKET = 4096


@dataclass(frozen=True)
class AccelOptions:
    """How the torch backend runs (config ``model.*``; bench flags).

    ``batch_sizes``: bucket sizes batches are padded to when compiled; empty = powers of two up
    to ``max_batch`` plus ``max_batch`` itself. ``device_preprocess``: None = on CUDA only.
    ``compile_backend`` is for tests (``"eager"``/``"aot_eager"`` compile in milliseconds)."""

    precision: str = "auto"
    compile: bool = False
    compile_mode: str = "default"
    channels_last: bool = False
    batch_sizes: tuple[int, ...] = ()
    max_batch: int = 32
    device_preprocess: bool | None = None
    compile_backend: str = "inductor"

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision {self.precision!r}: use one of {', '.join(PRECISIONS)}")
        if self.compile_mode not in COMPILE_MODES:
            raise ValueError(f"compile_mode {self.compile_mode!r}: use one of {', '.join(COMPILE_MODES)}")
        if not 1 <= int(self.max_batch) <= MAX_BUCKET:
            raise ValueError(f"max_batch {self.max_batch} must be in 1..{MAX_BUCKET}")
        b = tuple(self.batch_sizes)
        if any(not isinstance(v, (int, np.integer)) or not 1 <= v <= MAX_BUCKET for v in b) \
                or list(b) != sorted(set(b)):
            raise ValueError(f"batch sizes {list(b)} must be increasing whole numbers in 1..{MAX_BUCKET}")

    def buckets(self) -> tuple[int, ...]:
        return tuple(int(v) for v in self.batch_sizes) or bucket_sizes(self.max_batch)


def bucket_sizes(max_batch: int) -> tuple[int, ...]:
    """Powers of two below ``max_batch``, then ``max_batch``: 32 -> (1, 2, 4, 8, 16, 32);
    12 -> (1, 2, 4, 8, 12). Padding wastes less than half a batch."""
    if max_batch < 1:
        raise ValueError(f"max_batch must be >= 1, got {max_batch}")
    out, p = [], 1
    while p < max_batch:
        out.append(p)
        p *= 2
    return (*out, int(max_batch))


def bucket_for(n: int, buckets: Sequence[int]) -> int:
    """The smallest bucket that holds ``n`` crops (callers split batches above the largest)."""
    for b in buckets:
        if b >= n:
            return b
    raise ValueError(f"batch of {n} is larger than the largest bucket {max(buckets)}; split it first")


def resolve_precision(precision: str, device: str, bf16_supported: bool = True) -> str:
    """``fp32``/``fp16``/``bf16`` actually used. Reduced precision is a CUDA feature: on the
    CPU the model runs fp32 (logged when something else was asked for); ``auto`` is fp16 on
    CUDA; bf16 on a GPU without bf16 is an error that says what to use instead."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision {precision!r}: use one of {', '.join(PRECISIONS)}")
    if not str(device).startswith("cuda"):
        if precision in ("fp16", "bf16"):
            logger.info("precision {} applies on CUDA only; the CPU runs fp32", precision)
        return "fp32"
    if precision == "auto":
        return "fp16"
    if precision == "bf16" and not bf16_supported:
        raise ValueError("precision bf16: this GPU has no bfloat16 support (needs Ampere or newer); "
                         "set model.precision: fp16")
    return precision


class CudaTorchClassifier(TorchClassifier):
    """Torch backend for CUDA (also runs on the CPU, which the unit tests use)."""

    def __init__(self, model: "torch.nn.Module", info: ModelInfo, device: str = "cuda",
                 opts: AccelOptions | None = None) -> None:
        import torch

        opts = opts or AccelOptions()
        super().__init__(model, info, device=device, amp=False, channels_last=opts.channels_last)
        self.opts = opts
        bf16_ok = device.startswith("cuda") and torch.cuda.is_bf16_supported()
        self.precision = resolve_precision(opts.precision, device, bf16_ok)
        self._dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(self.precision)
        self._device_type = torch.device(device).type
        self.buckets = opts.buckets()
        self.compiled = bool(opts.compile)
        use_dev = opts.device_preprocess if opts.device_preprocess is not None else self._device_type == "cuda"
        self._prep = None
        if use_dev:
            from .gpu_preprocess import DevicePreprocessor

            self._prep = DevicePreprocessor(info, device, channels_last=opts.channels_last)
        cudagraphs = self.compiled and opts.compile_mode == "reduce-overhead"
        self._exec = ThreadPoolExecutor(1, thread_name_prefix="cuda-infer") if cudagraphs else None
        self._fn = self._compile() if self.compiled else self.model
        self._warm = False
        self.warmup_s: dict[int, float] = {}
        if self.compiled:
            self._call(self._warm_up)
        self._warm = True

    @classmethod
    def from_folder(cls, model_dir: str | Path, device: str = "cuda",  # type: ignore[override]
                    opts: AccelOptions | None = None) -> "CudaTorchClassifier":
        model, info = load_torch_model(model_dir, device="cpu")
        try:
            clf = cls(model, info, device=device, opts=opts)
        except ValueError as exc:
            raise ModelLoadError(f"{model_dir}: {exc}") from None
        logger.info("classifier {}: {}", info.name, clf.describe())
        return clf

    def describe(self) -> str:
        comp = f"compiled ({self.opts.compile_mode}, buckets {list(self.buckets)})" if self.compiled else "eager"
        prep = "on the device" if self._prep is not None else "on the host"
        return (f"torch {self.device} {self.precision} {comp} channels_last={self.channels_last} "
                f"preprocessing {prep}")

    def predict(self, crops: Sequence[np.ndarray]) -> np.ndarray:
        if len(crops) == 0:
            return np.zeros((0, self.info.num_classes), dtype=np.float32)
        return calibrated_softmax(self._call(self._logits_of, crops), self.info.temperature)

    def close(self) -> None:
        if self._exec is not None:
            self._exec.shutdown(wait=True)

    # ---- internals -----------------------------------------------------------------------
    def _call(self, fn, *args):  # noqa: ANN001, ANN202
        if self._exec is None:
            return fn(*args)
        return self._exec.submit(fn, *args).result()

    def _logits_of(self, crops: Sequence[np.ndarray]) -> np.ndarray:
        torch = self._torch
        step = self.buckets[-1] if self.compiled else len(crops)
        outs = []
        stance = torch.compiler.set_stance("eager_on_recompile") if self.compiled and self._warm else nullcontext()
        with torch.inference_mode(), stance:
            for i in range(0, len(crops), step):
                part = crops[i:i + step]
                x = self._input(part, bucket_for(len(part), self.buckets) if self.compiled else None)
                amp = torch.autocast(self._device_type, dtype=self._dtype) if self._dtype else nullcontext()
                if self._exec is not None:  # CUDA graphs: each call is a new step (outputs get reused)
                    torch.compiler.cudagraph_mark_step_begin()
                with amp:
                    y = self._fn(x)
                outs.append(y[:len(part)].to(torch.float32, copy=True))  # a copy: never alias a graph's output
            return torch.cat(outs).cpu().numpy()

    def _input(self, crops: Sequence[np.ndarray], pad_to: int | None) -> "torch.Tensor":
        torch = self._torch
        if self._prep is not None:
            return self._prep(crops, pad_to=pad_to)
        from .preprocessing import preprocess

        x = preprocess(crops, self.info)
        if pad_to is not None and pad_to > len(x):
            x = np.concatenate([x, np.zeros((pad_to - len(x), *x.shape[1:]), dtype=x.dtype)])
        t = torch.from_numpy(x).to(self.device)
        return t.contiguous(memory_format=torch.channels_last) if self.channels_last else t

    def _compile(self):  # noqa: ANN202
        torch = self._torch
        import torch._dynamo

        need = len(self.buckets) + 4
        for key in ("cache_size_limit", "recompile_limit"):  # renamed across torch versions
            if hasattr(torch._dynamo.config, key):
                setattr(torch._dynamo.config, key, max(getattr(torch._dynamo.config, key), need))
        if self._device_type == "cuda":
            torch.backends.cudnn.benchmark = True  # shapes are fixed (buckets) and seen at warm-up
        if self.opts.compile_backend == "inductor":
            return torch.compile(self.model, mode=self.opts.compile_mode, dynamic=False)
        return torch.compile(self.model, backend=self.opts.compile_backend, dynamic=False)

    def _warm_up(self) -> None:
        """Compile (and with CUDA graphs, record) every bucket now, never mid-stream."""
        rng = np.random.default_rng(0)
        s = self.info.input_size
        runs = 3 if self.opts.compile_mode == "reduce-overhead" else 1
        for b in self.buckets:
            crops = [rng.integers(0, 256, (s, s, 3), dtype=np.uint8) for _ in range(b)]
            t0 = time.perf_counter()
            for _ in range(runs):
                self._logits_of(crops)
            self.warmup_s[b] = round(time.perf_counter() - t0, 3)
            logger.info("classifier {}: compiled batch {} in {:.1f} s", self.info.name, b, self.warmup_s[b])
