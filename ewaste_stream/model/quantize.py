"""Static int8 quantization of a model folder's ONNX file, for the CPU.

ONNX Runtime's static quantization (QDQ format, per-channel int8 weights, uint8 activations
with ranges calibrated on real crops) runs a convolutional net about 1.6x faster on two CPU
cores. EfficientNet-Lite was designed for int8 (ReLU6, no squeeze-excite), so it loses little;
most of what it loses is in the first layers, which stay in float (``float_convs``, for about
the same speed).
The result is checked before it is recorded: the int8 graph must agree with the fp32 graph on
the top-1 class of held-back crops (``min_agreement``), otherwise nothing is written.

The int8 file sits next to ``model.onnx`` as ``model.int8.onnx`` (``weights.onnx_int8`` in
``model.json``, with its sha256) and ``metrics.int8`` says which fp32 file it came from, what
it was calibrated on and how well it agreed. ``model.precision: auto`` runs it on the CPU;
``fp32`` runs ``model.onnx``. Re-exporting ``model.onnx`` drops the stale int8 entry.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Sequence

import numpy as np
from loguru import logger

from .folder import WEIGHT_FILES, ModelInfo, load_model_info, weights_path, write_model_info
from .onnx_export import INPUT_NAME, ModelExportError, constant_names, fold_pads_into_convs
from .preprocessing import preprocess
from .weights import ModelLoadError, sha256_file
from ..training.calibration import fit_temperature_to, softmax

CALIBRATION_BATCH = 8
# the first convolutions stay in float: an EfficientNet-Lite0's stem and first block (3 convolutions at
# 1/2 of the input) cost little there and most of int8's error (models/README.md, "First layers in float")
FLOAT_CONVS = 3


def _session(path: Path, threads: int = 2):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def _logits(sess, crops: Sequence[np.ndarray], info: ModelInfo) -> np.ndarray:
    from ..training.datasets import predict_probs  # its batching loop, here over raw logits

    return predict_probs(lambda chunk: sess.run(None, {INPUT_NAME: preprocess(chunk, info)})[0], crops, batch_size=32)


def fp32_graph(model_dir: str | Path) -> tuple[ModelInfo, Path]:
    """A model folder's ``model.json`` and its checked ``model.onnx``, the graph int8 is made from;
    a folder without one raises :class:`ModelLoadError` saying to export it first."""
    d = Path(model_dir)
    info = load_model_info(d)
    if "onnx" not in info.weights:
        raise ModelLoadError(f"{d}: no model.onnx to quantize; run `ewaste-stream export {d} --format onnx` first")
    return info, weights_path(d, info, "onnx")


def leading_nodes(graph_path: str | Path, convs: int) -> list[str]:
    """The names of a graph's nodes up to and including its ``convs``-th convolution, in the
    graph's (topological) order: the first layers, which int8 hurts most, left in float by
    :func:`quantize_folder`. Empty for ``convs`` 0."""
    import onnx

    names: list[str] = []
    seen = 0
    for node in onnx.load(str(graph_path)).graph.node:
        if seen >= convs:
            break
        names.append(node.name)
        seen += node.op_type == "Conv"
    return names


def quantize_folder(model_dir: str | Path, calibration: Sequence[np.ndarray], check: Sequence[np.ndarray],
                    min_agreement: float = 0.95, describe: dict | None = None, float_convs: int = FLOAT_CONVS
                    ) -> Path:
    """Write ``model.int8.onnx`` into ``model_dir`` from its ``model.onnx``: activation ranges
    from ``calibration`` (RGB uint8 crops as the camera's, e.g. photos + belt crops of the
    *train* split), then top-1 agreement with fp32 measured on ``check`` (other crops). Raises
    :class:`ModelExportError` (nothing written) when agreement is below ``min_agreement``.
    The graph's first ``float_convs`` convolutions (:func:`leading_nodes`) stay in float."""
    try:
        from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                              quantize_static)
        from onnxruntime.quantization.shape_inference import quant_pre_process
    except ImportError as exc:  # onnx missing
        raise ModelExportError(f"int8 quantization needs the onnx package ({exc}); "
                               f"pip install 'ewaste-stream[train]'") from None
    d = Path(model_dir)
    info, src = fp32_graph(d)
    if len(calibration) < CALIBRATION_BATCH or not len(check):
        raise ModelExportError(f"{d}: int8 calibration needs at least {CALIBRATION_BATCH} calibration crops and "
                               f"some check crops (got {len(calibration)} and {len(check)})")

    class _Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._batches = (preprocess(list(calibration[i:i + CALIBRATION_BATCH]), info)
                             for i in range(0, len(calibration), CALIBRATION_BATCH))

        def get_next(self):
            x = next(self._batches, None)
            return None if x is None else {INPUT_NAME: x}

    name = WEIGHT_FILES["onnx_int8"]
    with tempfile.TemporaryDirectory(dir=d) as tmp:
        pre, q = Path(tmp) / "pre.onnx", Path(tmp) / name
        quant_pre_process(str(src), str(pre))
        # a model.onnx exported before pads were folded: the quantizer would also quantize the float
        # arithmetic that computes the pad amounts, and get some of them wrong (the shipped model's
        # int8 graph of 2026-11-28 padded three of its five strided convolutions on the wrong side)
        fold_pads_into_convs(pre, info.input_size)
        kept = leading_nodes(pre, float_convs)
        quantize_static(str(pre), str(q), _Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        calibrate_method=CalibrationMethod.MinMax, nodes_to_exclude=kept)
        ref, got = _logits(_session(src), check, info), _logits(_session(q), check, info)
        agreement = float((ref.argmax(1) == got.argmax(1)).mean())
        p_ref = softmax(ref, info.temperature)
        t8 = fit_temperature_to(got, p_ref)  # calibrated to the fp32 graph's calibrated probabilities
        prob_diff = float(np.abs(p_ref - softmax(got, t8)).max(axis=1).mean())  # per crop: largest class difference
        if agreement < min_agreement:
            raise ModelExportError(f"{d}: the int8 graph agrees with fp32 on only {agreement:.1%} of {len(check)} "
                                   f"check crops (need {min_agreement:.0%}); keep running fp32 "
                                   f"(model.precision: fp32), or calibrate on crops closer to the camera's")
        n_pads = computed_pads(q)  # 0 after the fold; recorded so that loading need not parse the graph
        Path(q).replace(d / name)
    report = {"from_onnx_sha256": info.sha256.get("onnx") or sha256_file(src), "calibration_crops": len(calibration),
              "check_crops": len(check), "top1_agreement": round(agreement, 4),
              "mean_max_prob_diff": round(prob_diff, 4), "temperature_fit": "cross-entropy to the fp32 graph's "
                                                                                "probabilities on the check crops",
              "method": "onnxruntime quantize_static QDQ, per-channel "
                                                              "int8 weights, uint8 activations, MinMax",
              "computed_pads": n_pads, "float_convs": float_convs, "float_nodes": kept, **(describe or {})}
    final = ModelInfo.model_validate({**info.model_dump(), "weights": {**info.weights, "onnx_int8": name},
                                      "sha256": {**info.sha256, "onnx_int8": sha256_file(d / name)},
                                      "metrics": {**info.metrics, "int8": report}, "int8_temperature": round(t8, 4)})
    write_model_info(d, final)
    logger.info("{}: int8 graph written ({}); top-1 agreement with fp32 {:.2%} on {} crops; temperature {:.3f} "
                "(fp32 {:.3f})", d, name, agreement, len(check), t8, info.temperature)
    return d / name


def computed_pads(path: str | Path) -> int:
    """How many ``Pad`` nodes of an ONNX file take amounts computed at run time (not a constant).
    In an int8 graph those amounts went through the quantizer and may be wrong: graphs made before
    pads were folded (see ``onnx_export.fold_pads_into_convs``). ``quantize_folder`` records the
    count in ``metrics.int8.computed_pads``; loading reads it there (importing ``onnx`` to parse
    the graph would add about a second to every start-up)."""
    import onnx

    g = onnx.load(str(path), load_external_data=False).graph
    constant = constant_names(g)
    return sum(1 for n in g.node
               if n.op_type == "Pad" and len(n.input) > 1 and n.input[1] and n.input[1] not in constant)


def stale_int8(info: ModelInfo) -> bool:
    """True when the int8 graph was made from another ``model.onnx`` than the folder's."""
    src = (info.metrics.get("int8") or {}).get("from_onnx_sha256")
    return bool(src) and bool(info.sha256.get("onnx")) and src != info.sha256["onnx"]


def calibration_crops(train_dir: str | Path, class_names: Sequence[str], per_class: int = 24,
                      seed: int = 7) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """(calibration, check) crops from a train split: for every class, ``per_class`` photos and
    a belt crop of each (the camera's view, rendered by the simulator), split half and half."""
    from ..training.data import scan_split
    from ..training.datasets import belt_set, photo_set

    split = scan_split(train_dir, tuple(class_names))
    by_class: dict[int, list] = {}
    for s in split.samples:
        by_class.setdefault(s.label, []).append(s)
    picked = {s.path for c in sorted(by_class) for s in by_class[c][::max(1, len(by_class[c]) // per_class)][:per_class]}
    sub = split.subset(picked)
    photos = photo_set(sub).crops
    belt = belt_set(sub, 1, seed, cache_dir=None).crops
    cal, chk = [], []
    for i, (p, b) in enumerate(zip(photos, belt)):
        (cal if i % 2 == 0 else chk).extend([p, b])
    return cal, chk
