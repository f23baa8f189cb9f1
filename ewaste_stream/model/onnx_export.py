"""ONNX export with a dynamic batch axis, verified against torch right after export.

TensorFlow-style "same" padding (timm's ``tf_*`` models, e.g. the shipped EfficientNet-Lite0) exports
as a ``Pad`` before each strided convolution, its amounts computed from the input's shape at run time.
ONNX Runtime then copies the tensor for each pad, and its int8 quantizer cannot fuse a convolution
through the pad (dequantize -> pad -> quantize around each one). :func:`fold_pads_into_convs` moves each
such pad into its convolution's own ``pads``: the same function, and on two CPU cores the shipped
model's fp32 graph ran 1.4-1.6x and its int8 graph 1.6-2.0x as fast (``tools/bench_infer.py``, batch 1-8).
"""

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
                verify: bool = True, fold_pads: bool = True) -> Path:
    """Export ``model`` (eval mode, CPU, fp32) to ``path``: input ``input`` [N,3,S,S] float32,
    output ``logits`` [N,C]; N is dynamic. With ``fold_pads`` zero pads before convolutions are
    folded into them (:func:`fold_pads_into_convs`; off: the exporter's graph as it is). With ``verify`` the file is run in ONNX Runtime
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
    folded = fold_pads_into_convs(p, input_size) if fold_pads else 0
    if folded:
        logger.info("{}: {} zero pads folded into their convolutions", p, folded)
    if verify:
        diff = verify_onnx(p, model, input_size)
        logger.info("exported {} ({}): max |logit diff| vs torch {:.2e}", p, arch, diff)
    return p


def constant_names(graph) -> set[str]:  # noqa: ANN001 - an onnx.GraphProto
    """Names of the tensors of an ONNX graph that are constants: initializers and Constant outputs."""
    return {t.name for t in graph.initializer} | {o for n in graph.node if n.op_type == "Constant" for o in n.output}


def fold_pads_into_convs(path: str | Path, input_size: int) -> int:
    """Rewrite the ONNX file at ``path`` so that each zero ``Pad`` whose only consumers are
    ``Conv`` nodes becomes part of those convolutions' ``pads``; returns how many were folded.
    Any other pad whose amounts are computed at run time gets them as a constant.

    Pad amounts computed from the input's shape are read by running the graph on inputs of batch 1
    and 2 (``input_size`` square); amounts that differ between the two are left as they are. A pad
    that pads the batch or channel axes, is negative, pads with a value other than 0 or feeds
    anything but a convolution is not folded. The shape arithmetic that fed the pads is removed, so
    a quantizer cannot touch it. Without the ``onnx`` package nothing is changed."""
    try:
        import onnx
        from onnx import helper, numpy_helper
    except ImportError:
        logger.info("{}: pads not folded into convolutions (no onnx package; pip install 'ewaste-stream[train]' "
                    "for a faster CPU graph)", path)
        return 0
    import onnxruntime as ort

    model = onnx.load(str(path))
    g = model.graph
    pads_all = [n for n in g.node if n.op_type == "Pad"]
    if not pads_all:
        return 0
    consumers: dict[str, list] = {}
    for n in g.node:
        for name in n.input:
            consumers.setdefault(name, []).append(n)
    graph_outputs = {o.name for o in g.output}

    def attr(node, name, default=None):  # noqa: ANN001, ANN202
        return next((helper.get_attribute_value(a) for a in node.attribute if a.name == name), default)

    def foldable(n) -> bool:  # noqa: ANN001
        return (attr(n, "mode", b"constant") == b"constant"
                and not (len(n.input) > 3 and n.input[3])  # no axes input: pads are over all four axes
                and n.output[0] not in graph_outputs and bool(consumers.get(n.output[0]))
                and all(c.op_type == "Conv" and c.input[0] == n.output[0]
                        and attr(c, "auto_pad", b"NOTSET") == b"NOTSET" for c in consumers[n.output[0]]))

    inits = {t.name: numpy_helper.to_array(t) for t in g.initializer}
    constants = constant_names(g)
    wanted = sorted({name for n in pads_all for name in n.input[1:3] if name and name not in inits})
    values = [inits, inits]
    if wanted:  # computed at run time (or Constant nodes): ask the graph for them
        inferred = onnx.shape_inference.infer_shapes(model).graph.value_info
        types = {v.name: v.type.tensor_type.elem_type for v in inferred}
        probe = onnx.ModelProto()
        probe.CopyFrom(model)
        for name in wanted:
            elem = types.get(name, onnx.TensorProto.INT64)
            probe.graph.output.append(helper.make_tensor_value_info(name, elem, None))
        sess = ort.InferenceSession(probe.SerializeToString(), providers=["CPUExecutionProvider"])
        feed = sess.get_inputs()[0].name
        values = [{**inits, **dict(zip(wanted, sess.run(wanted, {feed: np.zeros((b, 3, input_size, input_size),
                                                                                  np.float32)})))} for b in (1, 2)]
    folded = fixed = 0
    for n in pads_all:
        has_amounts = len(n.input) > 1 and bool(n.input[1])
        amounts = [np.asarray(v[n.input[1]]).astype(np.int64).ravel() if has_amounts
                   else np.asarray(attr(n, "pads", []), np.int64) for v in values]
        if not np.array_equal(amounts[0], amounts[1]):
            continue  # depends on the batch: leave it
        pads = amounts[0]
        fill = [float(np.asarray(v[n.input[2]]).ravel()[0]) if len(n.input) > 2 and n.input[2]
                else float(attr(n, "value", 0.0)) for v in values]
        if (foldable(n) and pads.shape == (8,) and pads.min() >= 0 and not pads[[0, 1, 4, 5]].any()
                and fill == [0.0, 0.0]):
            for conv in consumers[n.output[0]]:
                before = list(attr(conv, "pads", [0, 0, 0, 0]))
                add = [int(pads[2]), int(pads[3]), int(pads[6]), int(pads[7])]  # H/W begins, then H/W ends
                for a in [a for a in conv.attribute if a.name == "pads"]:
                    conv.attribute.remove(a)
                conv.attribute.append(helper.make_attribute("pads", [b + a for b, a in zip(before, add)]))
                conv.input[0] = n.input[0]
            g.node.remove(n)
            folded += 1
        elif has_amounts and n.input[1] not in constants:
            name = f"{n.name or n.output[0]}_static_pads"
            g.initializer.append(numpy_helper.from_array(pads, name))
            n.input[1] = name
            fixed += 1
    if not (folded or fixed):
        return 0
    while True:  # drop what fed only the removed or fixed pads
        used = {name for n in g.node for name in n.input} | graph_outputs
        dead = [n for n in g.node if not any(o in used for o in n.output)]
        if not dead:
            break
        for n in dead:
            g.node.remove(n)
    used = {name for n in g.node for name in n.input}
    for t in [t for t in g.initializer if t.name not in used]:
        g.initializer.remove(t)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    if fixed:
        logger.info("{}: {} pad amounts computed at run time fixed as constants", path, fixed)
    return folded


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
