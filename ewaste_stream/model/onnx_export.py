"""ONNX export with a dynamic batch axis, verified against torch right after export."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from loguru import logger

if TYPE_CHECKING:  # pragma: no cover
    import torch

DEFAULT_OPSET = 17  # classic exporter; onnxruntime >= 1.14 runs it
INPUT_NAME, OUTPUT_NAME = "input", "logits"


class ModelExportError(RuntimeError):
    """Export failed, or the exported file does not compute what the torch model computes."""


def export_onnx(model: "torch.nn.Module", path: str | Path, input_size: int, opset: int = DEFAULT_OPSET,
                verify: bool = True) -> Path:
    """Export ``model`` (eval mode, CPU, fp32) to ``path``: input ``input`` [N,3,S,S] float32,
    output ``logits`` [N,C]; N is dynamic. With ``verify`` the file is run in ONNX Runtime
    on a batch of a different size than the one traced and compared with torch."""
    import torch

    p = Path(path)
    model = model.eval()
    dummy = torch.randn(2, 3, input_size, input_size, generator=torch.Generator().manual_seed(0))
    arch = getattr(model, "pretrained_cfg", {}).get("architecture", type(model).__name__)
    try:
        with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
            warnings.simplefilter("ignore")  # tracer / deprecation chatter; verification below is the check
            torch.onnx.export(model, (dummy,), str(p), dynamo=False, opset_version=opset,
                              input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                              dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
                              do_constant_folding=True)
    except Exception as exc:  # exporter errors come in many types
        raise ModelExportError(f"{p}: ONNX export of {arch} failed: {type(exc).__name__}: {exc}") from exc
    if verify:
        diff = verify_onnx(p, model, input_size)
        logger.info("exported {} ({}): max |logit diff| vs torch {:.2e}", p, arch, diff)
    return p


def verify_onnx(path: str | Path, model: "torch.nn.Module", input_size: int, batch: int = 3,
                atol: float = 1e-3, rtol: float = 1e-3) -> float:
    """Max abs logit difference between ONNX Runtime and torch on a random batch; raises
    :class:`ModelExportError` when it exceeds ``atol + rtol * max|logit|``."""
    import onnxruntime as ort
    import torch

    x = torch.randn(batch, 3, input_size, input_size, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        ref = model.eval()(x).float().numpy()
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    try:
        sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        got = sess.run([OUTPUT_NAME], {INPUT_NAME: x.numpy()})[0]
    except Exception as exc:
        raise ModelExportError(f"{path}: ONNX Runtime cannot run the exported file: {exc}") from exc
    if got.shape != ref.shape:
        raise ModelExportError(f"{path}: ONNX output shape {got.shape} != torch {ref.shape}")
    diff = float(np.abs(got - ref).max())
    if not diff <= atol + rtol * float(np.abs(ref).max()):
        raise ModelExportError(f"{path}: ONNX output differs from torch (max |diff| {diff:.3g}); "
                               f"try another opset or report the architecture")
    return diff


def export_folder_onnx(model_dir: str | Path, opset: int = DEFAULT_OPSET) -> Path:
    """(Re)export a model folder's safetensors weights to ``model.onnx`` in the same folder,
    verify it against torch and record it (file name + sha256) in ``model.json``."""
    from .folder import WEIGHT_FILES, ModelInfo, drop_int8, load_torch_model, write_model_info
    from .weights import sha256_file

    d = Path(model_dir)
    model, info = load_torch_model(d, device="cpu")
    name = info.weights.get("onnx", WEIGHT_FILES["onnx"])
    tmp = d / (name + ".tmp")
    try:
        export_onnx(model, tmp, info.input_size, opset=opset)
        tmp.replace(d / name)
    finally:
        if tmp.exists():
            tmp.unlink()
    fields = {**info.model_dump(), "weights": {**info.weights, "onnx": name},
              "sha256": {**info.sha256, "onnx": sha256_file(d / name)}}
    if drop_int8(d, fields):  # made from the file just replaced: drop it rather than run a stale graph
        logger.warning("{}: removed the int8 graph (it was made from the previous model.onnx); make a new one "
                       "with `ewaste-stream export {} --format onnx-int8 --calib TRAIN_DIR`", d, d)
    final = ModelInfo.model_validate(fields)
    write_model_info(d, final)
    return d / name
