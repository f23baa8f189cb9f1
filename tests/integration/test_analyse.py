"""``ewaste-stream analyse`` end to end: a tiny model folder, a few generated images, a decision
log; checks the report folder (HTML links resolve, report.json numbers) and the exit codes."""

from __future__ import annotations

import json
import re
import shutil

import numpy as np
import pytest

torch = pytest.importorskip("torch")
cv2 = pytest.importorskip("cv2")

from ewaste_stream import CLASS_NAMES  # noqa: E402
from ewaste_stream.cli import main  # noqa: E402
from ewaste_stream.protocol import encode_decision  # noqa: E402
from ewaste_stream.testing import make_decision  # noqa: E402

CLASSES = ("Battery", "Mouse", "PCB")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    from ewaste_stream.model import ModelInfo, create_model, save_model_folder

    torch.manual_seed(0)
    model = create_model("ewaste_small_cnn", len(CLASS_NAMES))
    info = ModelInfo.for_model(model, "tiny-test", CLASS_NAMES, input_size=32, temperature=1.5)
    return save_model_folder(tmp_path_factory.mktemp("model"), model, info, export_onnx=False)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    """Four 48x40 images per class: a coloured blob on a grey background."""
    root = tmp_path_factory.mktemp("data")
    rng = np.random.default_rng(0)
    for k, name in enumerate(CLASSES):
        (root / name).mkdir()
        for i in range(4):
            img = np.full((40, 48, 3), 90, np.uint8)
            x, y = rng.integers(0, 28), rng.integers(0, 20)
            img[y:y + 20, x:x + 20] = (60 * (k + 1), 255 - 70 * k, 40 * i)
            cv2.imwrite(str(root / name / f"{name.lower()}_{i}.jpg"), img)
    return root


@pytest.fixture()
def decision_log(tmp_path):
    p = tmp_path / "decisions.jsonl"
    ds = [make_decision(s, label="reject" if s % 4 == 0 else "Mouse") for s in (1, 2, 3, 4, 6, 7, 8)]
    p.write_text("\n".join(encode_decision(d).decode() for d in ds) + "\n")
    return p


def _links_resolve(html_path):
    html = html_path.read_text()
    srcs = re.findall(r'(?:src|href)="([^"#]+)"', html)
    missing = [s for s in srcs if not (html_path.parent / s).is_file()]
    return srcs, missing


@pytest.fixture(autouse=True)
def _one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.mark.slow
def test_analyse_model_and_decision_log(model_dir, data_dir, decision_log, tmp_path, capsys):
    out = tmp_path / "report"
    train = tmp_path / "train" / "Mouse"
    train.mkdir(parents=True)
    shutil.copy(data_dir / "Mouse" / "mouse_1.jpg", train / "copy.jpg")  # one leaked image
    rc = main(["analyse", "--model", str(model_dir), "--data", str(data_dir), "--out", str(out),
               "--video", str(decision_log), "--per-class", "2", "--threads", "1", "--train-dir", str(train.parent)])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "vote.min_confidence" in printed and "vote.min_margin" in printed
    assert "configured vote.min_confidence" in printed

    numbers = json.loads((out / "report.json").read_text())
    assert numbers["metrics"]["n"] == 12 and numbers["model"]["temperature"] == 1.5
    assert set(numbers["uncertainty"]["recommended"]) == {"confidence", "margin"}
    assert numbers["uncertainty"]["at_config"]["n_total"] == 12
    assert numbers["leaks"]["n"] == 1 and numbers["leaks"]["items"][0]["byte_identical"]
    assert numbers["leak_free"]["n"] == 11 and numbers["leak_free"]["uncertainty"]["n"] == 11
    assert "leak-free (11 images" in printed
    assert numbers["gradcam"]["target_layer"] == "stages.2"  # at 32 px stages.3 is 1x1: auto skips it
    wrong = len(numbers["metrics"]["misclassified"])
    assert len(numbers["gradcam"]["errors"]) == wrong == len(numbers["worst_errors"])
    assert len(numbers["gradcam"]["sample"]) == 2 * len(CLASSES)
    assert all(len(e["top3"]) == 3 for e in numbers["worst_errors"])
    assert "t-SNE" in numbers["embedding"]

    srcs, missing = _links_resolve(out / "index.html")
    assert not missing
    assert len({s for s in srcs if s.startswith("img/cam_")}) == len(set(numbers["gradcam"]["sample"])
                                                              | set(numbers["gradcam"]["errors"]))
    assert "decisions.html" in srcs  # the model report links the decision-log report
    dec = json.loads((out / "decisions.json").read_text())
    assert dec["decisions"] == 7 and dec["boots"]["boot-a"]["gaps"] == [[5, 5]]
    assert not _links_resolve(out / "decisions.html")[1]


def test_decision_log_alone_with_ground_truth(decision_log, tmp_path, capsys):
    gt = tmp_path / "demo.gt.jsonl"  # items crossing where make_decision's decisions cross (t = seq + 0.5)
    gt.write_text("".join(json.dumps({"label": "Mouse", "t_cross": s + 0.5, "y": 0.5}) + "\n" for s in range(1, 9)))
    (tmp_path / "demo.meta.json").write_text(json.dumps({"fps": 30.0}))
    out = tmp_path / "r"
    assert main(["analyse", "--video", str(decision_log), "--gt", str(gt), "--out", str(out)]) == 0
    numbers = json.loads((out / "report.json").read_text())
    assert numbers["rejects"] == 2
    assert numbers["ground_truth"]["score"]["matched"] == 7 and numbers["ground_truth"]["score"]["missed"] == 1
    assert "recommended (fused decisions) vote.min_confidence" in capsys.readouterr().out
    assert not _links_resolve(out / "index.html")[1]


@pytest.mark.parametrize("extra,needs_data", [
    (["--target-layer", "stages.9"], True),  # unknown layer: exit 2 before any work
    ([], False),  # neither --data nor --video
    (["--video", "missing.jsonl"], False),
    (["--per-class", "-1"], True),
    (["--config", "missing.yaml"], True),
    (["--gt", "x.gt.jsonl"], False),  # --gt without --video
])
def test_bad_usage_exits_2(model_dir, data_dir, tmp_path, extra, needs_data):
    args = ["analyse", "--model", str(model_dir), "--out", str(tmp_path / "r"), *extra]
    if needs_data:
        args += ["--data", str(data_dir)]
    assert main(args) == 2
    assert not (tmp_path / "r" / "index.html").exists()


def test_unknown_class_folder_exits_2(model_dir, tmp_path):
    (tmp_path / "d" / "Toaster").mkdir(parents=True)
    cv2.imwrite(str(tmp_path / "d" / "Toaster" / "t.jpg"), np.zeros((8, 8, 3), np.uint8))
    assert main(["analyse", "--model", str(model_dir), "--data", str(tmp_path / "d"), "--out", str(tmp_path / "r")]) == 2
