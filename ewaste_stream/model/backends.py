"""Classifier backends: ONNX Runtime (CPU, CUDA provider) and PyTorch (CPU/CUDA, AMP,
channels_last). Both share :func:`preprocess` and :func:`calibrated_softmax`, so they give
the same probabilities for the same model folder.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Sequence

import numpy as np
from loguru import logger

from .folder import ModelInfo, load_model_info, load_torch_model, weights_path
from .preprocessing import preprocess
from .weights import ModelLoadError

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from .base import Classifier
    from .cuda import AccelOptions

Backend = Literal["auto", "onnx", "torch"]
Device = Literal["auto", "cpu", "cuda"]


def calibrated_softmax(logits: np.ndarray, temperature: float) -> np.ndarray:
    """softmax(logits / T) in float32, numerically stable; rows sum to 1."""
    z = np.asarray(logits, dtype=np.float64) / float(temperature)
    z -= z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)


class _Base:
    backend = "?"

    def __init__(self, info: ModelInfo, device: str) -> None:
        self.info = info
        self.device = device
        self._sha = info.fingerprint()

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.info.class_names

    @property
    def name(self) -> str:
        return self.info.name

    @property
    def sha256(self) -> str:
        return self._sha

    def predict(self, crops: Sequence[np.ndarray]) -> np.ndarray:
        if len(crops) == 0:
            return np.zeros((0, self.info.num_classes), dtype=np.float32)
        logits = self._logits(preprocess(crops, self.info))
        return calibrated_softmax(logits, self.temperature)

    @property
    def temperature(self) -> float:
        """The temperature of the graph that runs (the int8 graph has its own)."""
        return self.info.temperature

    def _logits(self, x: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.info.name!r}, {self.info.arch}, device={self.device})"


class OrtClassifier(_Base):
    """ONNX Runtime; CPU with ``threads`` intra-op threads, or the CUDA execution provider."""

    backend = "onnx"

    def __init__(self, model_dir: str | Path, device: str = "cpu", threads: int = 2,
                 spin: bool = False, precision: str = "auto") -> None:
        import onnxruntime as ort

        info = load_model_info(model_dir)
        if device == "cuda" and "CUDAExecutionProvider" not in ort.get_available_providers():
            logger.warning("{}: device cuda asked for, but onnxruntime {} has no CUDA provider (install "
                           "onnxruntime-gpu, or use backend torch); running ONNX Runtime on the CPU",
                           model_dir, ort.__version__)
            device = "cpu"
        self.precision = onnx_precision(model_dir, info, precision, device)
        path = weights_path(model_dir, info, "onnx_int8" if self.precision == "int8" else "onnx")
        if self.precision == "int8":
            n_pads = (info.metrics.get("int8") or {}).get("computed_pads")  # measured when it was made
            if n_pads != 0:
                said = (f"computes {n_pads} pad amounts at run time" if n_pads else
                        "may compute pad amounts at run time (made before model.json recorded "
                        "metrics.int8.computed_pads)")
                logger.warning("{}: this int8 graph {}, through the quantizer, which can get them wrong (the shipped "
                               "graph before 2026-12-06 padded three convolutions wrongly); re-make it with "
                               "`ewaste-stream export {} --format onnx-int8 --calib TRAIN_DIR`, or set "
                               "model.precision: fp32", path, said, model_dir)
        super().__init__(info, device)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = int(threads)
        opts.inter_op_num_threads = 1
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # no busy-waiting between batches: the detector and tracker share these cores
        opts.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
        providers: list = ["CPUExecutionProvider"]
        if device == "cuda":  # heuristic cuDNN algorithms: no exhaustive search stalls on a new batch size
            providers = [("CUDAExecutionProvider", {"cudnn_conv_algo_search": "HEURISTIC"}), *providers]
        try:
            self._sess = ort.InferenceSession(str(path), opts, providers=providers)
        except Exception as exc:
            raise ModelLoadError(f"{path}: ONNX Runtime cannot load it ({exc}); re-export with "
                                 f"`ewaste-stream export {Path(model_dir)} --format onnx`") from None
        self._input = self._sess.get_inputs()[0].name
        self.provider = self._sess.get_providers()[0]
        if device == "cuda" and self.provider != "CUDAExecutionProvider":
            logger.warning("{}: onnxruntime could not start its CUDA provider (CUDA/cuDNN libraries missing?); "
                           "running on the CPU", path)
            self.device = "cpu"
        logger.info("classifier {}: onnxruntime {} {} threads={} ({})", info.name, self.provider, self.precision,
                    threads, path)

    def _logits(self, x: np.ndarray) -> np.ndarray:
        return self._sess.run(None, {self._input: x})[0]

    @property
    def temperature(self) -> float:
        if self.precision == "int8" and self.info.int8_temperature is not None:
            return self.info.int8_temperature
        return self.info.temperature


def onnx_precision(model_dir: str | Path, info: ModelInfo, precision: str, device: str) -> str:
    """Which ONNX graph runs: ``int8`` (``model.int8.onnx``, CPU only) or ``fp32`` (``model.onnx``).
    ``auto`` takes the int8 graph on the CPU when the folder has a current one."""
    from .quantize import stale_int8

    has_int8 = "onnx_int8" in info.weights
    if precision == "int8":
        if not has_int8:
            raise ModelLoadError(f"{Path(model_dir) / 'model.json'}: model.precision int8 asked for, but this folder "
                                 f"has no int8 graph; make one with `ewaste-stream export {model_dir} --format "
                                 f"onnx-int8 --calib TRAIN_DIR`, or set model.precision: auto or fp32")
        if device == "cuda":
            raise ModelLoadError(f"{model_dir}: the int8 graph is for the CPU; on CUDA set model.precision: auto "
                                 f"(fp16 with the torch backend) or fp32")
    if precision in ("int8", "auto") and has_int8 and device != "cuda":
        if stale_int8(info):
            if precision == "int8":
                raise ModelLoadError(f"{Path(model_dir) / 'model.json'}: the int8 graph was made from another "
                                     f"model.onnx; re-run `ewaste-stream export {model_dir} --format onnx-int8 "
                                     f"--calib TRAIN_DIR`")
            logger.warning("{}: the int8 graph was made from another model.onnx; running fp32 (re-quantize with "
                           "`ewaste-stream export {} --format onnx-int8 --calib TRAIN_DIR`)", model_dir, model_dir)
            return "fp32"
        return "int8"
    if precision in ("fp16", "bf16"):
        logger.info("precision {} applies to the torch backend; ONNX Runtime runs the fp32 graph", precision)
    return "fp32"


class TorchClassifier(_Base):
    """PyTorch eager; on CUDA with fp16 autocast (``amp``); optional channels_last."""

    backend = "torch"

    def __init__(self, model: "torch.nn.Module", info: ModelInfo, device: str = "cpu", amp: bool = True,
                 channels_last: bool = False) -> None:
        import torch

        super().__init__(info, device)
        self._torch = torch
        self.amp = bool(amp) and device.startswith("cuda")
        self.channels_last = channels_last
        self.model = model.to(device).eval()
        if channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)

    @classmethod
    def from_folder(cls, model_dir: str | Path, device: str = "cpu", amp: bool = True,
                    channels_last: bool = False) -> "TorchClassifier":
        model, info = load_torch_model(model_dir, device=device)
        clf = cls(model, info, device=device, amp=amp, channels_last=channels_last)
        logger.info("classifier {}: torch {} amp={} channels_last={}", info.name, device, clf.amp, channels_last)
        return clf

    def _logits(self, x: np.ndarray) -> np.ndarray:
        torch = self._torch
        t = torch.from_numpy(x).to(self.device, non_blocking=True)
        if self.channels_last:
            t = t.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode(), torch.autocast("cuda", dtype=torch.float16, enabled=self.amp):
            out = self.model(t)
        return out.float().cpu().numpy()


def cuda_available() -> bool:
    """Whether torch sees a CUDA device. On a Linux machine without the NVIDIA driver it cannot,
    and torch (seconds to import, most of a CPU replay's start-up) is not imported to ask."""
    if not nvidia_driver_present():
        return False
    try:
        import torch
    except ImportError:  # pragma: no cover
        return False
    return bool(torch.cuda.is_available())


def nvidia_driver_present() -> bool:
    """False only where it is certain: a Linux machine with no NVIDIA device node, no driver in
    /proc and no WSL GPU (/dev/dxg). Elsewhere (other systems) True: ask torch."""
    if not sys.platform.startswith("linux"):
        return True
    return (Path("/proc/driver/nvidia").exists() or Path("/dev/dxg").exists()
            or any(Path("/dev").glob("nvidia*")))


def load_classifier(model_dir: str | Path, backend: Backend = "auto", device: Device = "auto", threads: int = 2,
                    amp: bool = True, channels_last: bool = False, accel: "AccelOptions | None" = None,
                    precision: str = "auto") -> "Classifier":
    """The classifier for a model folder. ``auto`` backend: torch on CUDA when CUDA is
    available (and asked for by ``device``), else ONNX Runtime on the CPU (torch CPU if the
    folder has no ONNX file). ``threads`` sets CPU inference threads. ``accel`` (precision,
    compile, channels_last, batch buckets) configures the torch backend; on CUDA (or with
    compile) it is :class:`~ewaste_stream.model.cuda.CudaTorchClassifier`, and without
    ``accel`` ``amp``/``channels_last`` mean fp16 autocast / channels_last as before.
    ``precision`` (or ``accel.precision``) ``int8`` runs the folder's int8 ONNX graph; ``auto`` on
    the ONNX backend runs it on the CPU when the folder has one (see :mod:`.quantize`)."""
    info = load_model_info(model_dir)
    if device == "cuda" and backend != "onnx" and not cuda_available():
        raise ModelLoadError(f"{model_dir}: device cuda asked for, but torch sees no CUDA device; use --device cpu")
    if device == "auto":
        device = "cuda" if backend != "onnx" and cuda_available() else "cpu"
    if backend == "auto":
        if device == "cuda" and "safetensors" in info.weights:
            backend = "torch"
        elif "onnx" in info.weights or "onnx_int8" in info.weights:
            backend = "onnx"
        else:
            logger.warning("{}: no ONNX file; using the (slower) torch backend on {}", model_dir, device)
            backend = "torch"
    if accel is not None:
        precision = accel.precision
    if backend == "onnx":
        return OrtClassifier(model_dir, device=device, threads=threads, precision=precision)
    if precision == "int8":
        raise ModelLoadError(f"{model_dir}: model.precision int8 is the ONNX Runtime int8 graph; set "
                             f"model.backend: onnx (or auto on the CPU), or another precision for torch")
    if device == "cpu":
        import torch

        torch.set_num_threads(int(threads))
    if device == "cuda" or (accel is not None and accel.compile):
        from .cuda import AccelOptions, CudaTorchClassifier

        opts = accel or AccelOptions(precision="auto" if amp else "fp32", channels_last=channels_last)
        return CudaTorchClassifier.from_folder(model_dir, device=device, opts=opts)
    if accel is not None:
        channels_last = accel.channels_last
    return TorchClassifier.from_folder(model_dir, device=device, amp=amp, channels_last=channels_last)
