"""Train a tiny model end to end on generated images: model folder, model.json, metrics JSON,
resume from the full state, and a leak-aware evaluation that finds a copied file."""

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from ewaste_stream.cli import main
from ewaste_stream.training.data import DatasetError
from ewaste_stream.testing import load_tool

pytestmark = pytest.mark.slow
CLASSES = ("Battery", "Keyboard")


def _image(label: int, seed: int) -> np.ndarray:
    """150 x 150 like the dataset: a smooth random backdrop (distinct dHash per image) + a shape."""
    rng = np.random.default_rng(seed)
    img = cv2.resize(rng.integers(120, 256, (5, 5, 3), dtype=np.uint8), (150, 150), interpolation=cv2.INTER_CUBIC)
    c = (int(rng.integers(50, 100)), int(rng.integers(50, 100)))
    if label == 0:
        cv2.circle(img, c, int(rng.integers(22, 36)), (200, 30, 30), -1)
    else:
        cv2.rectangle(img, (c[0] - 30, c[1] - 20), (c[0] + 30, c[1] + 20), (30, 30, 200), -1)
    return img


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("data")
    for split, n, offset in (("train", 8, 0), ("val", 3, 100)):
        for label, name in enumerate(CLASSES):
            d = root / split / name
            d.mkdir(parents=True)
            for i in range(n):
                cv2.imwrite(str(d / f"{name}_{i}.jpg"), _image(label, offset + 10 * i + label)[..., ::-1])
    # a leak: one training image copied into val
    shutil.copy(root / "train" / "Battery" / "Battery_0.jpg", root / "val" / "Battery" / "copied.jpg")
    return root


def _train(dataset: Path, out: Path, work: Path, epochs: int, *extra: str) -> int:
    return main(["train", "--data", str(dataset), "--out", str(out), "--work-dir", str(work),
                 "--arch", "ewaste_small_cnn", "--pretrained", "none", "--input-size", "48",
                 "--epochs", str(epochs), "--head-epochs", "1", "--partial-epochs", "0", "--batch-size", "8",
                 "--belt-mix", "0.5", "--belt-bank", "1", "--val-belt-per-photo", "1", "--workers", "0",
                 "--threads", "1", "--cache-dir", str(work / "cache"), "--weights-dtype", "float32", *extra])


@pytest.fixture(scope="module")
def trained(dataset, tmp_path_factory):
    base = tmp_path_factory.mktemp("run")
    assert _train(dataset, base / "model", base / "work", 2) == 0
    return base


def test_model_folder_and_metrics(trained):
    d = trained / "model"
    info = json.loads((d / "model.json").read_text())
    assert info["class_names"] == list(CLASSES)
    assert info["input_size"] == 48 and info["arch"] == "ewaste_small_cnn"
    assert set(info["weights"]) == {"safetensors", "onnx"}
    assert all((d / f).is_file() for f in info["weights"].values())
    assert info["temperature"] > 0
    assert info["data"]["val_leaks"]["n"] == 1 and info["data"]["val_leaks"]["byte_identical"] == 1
    m = info["metrics"]
    assert m["epochs_run"] == 2 and 1 <= m["best_epoch"] <= 2
    for set_name in ("photo", "belt"):
        for view in ("single", "tta_rot90"):
            pair = m["val"][set_name][view]
            assert pair["all"]["n"] == 7 and pair["leak_free"]["n"] == 6
            assert 0.0 <= pair["leak_free"]["accuracy"] <= 1.0
    report = json.loads((d / "eval_val.json").read_text())
    photo = report["reports"]["photo"]["single"]["all"]
    assert sum(map(sum, photo["confusion"])) == 7 and "roc_auc_ovr" in photo and "ece" in photo
    assert report["leaks"][0]["eval"].endswith("copied.jpg")
    for f in ("training_curve.png", "confusion_photo.png", "confusion_belt.png", "train_config.yaml"):
        assert (d / f).is_file(), f
    assert (trained / "work" / "last.pt").is_file() and (trained / "work" / "best.pt").is_file()


def test_resume_continues_from_the_full_state(trained, dataset):
    work = trained / "work"
    before = json.loads((work / "history.json").read_text())
    # a resumed run may lengthen the schedule (T_0 10 -> 3 here); earlier epochs stay as they were
    assert _train(dataset, trained / "model2", work, 3, "--resume", "auto", "--t0", "3") == 0
    after = json.loads((work / "history.json").read_text())
    assert [h["epoch"] for h in after] == [1, 2, 3]
    assert after[:2] == before
    assert json.loads((trained / "model2" / "model.json").read_text())["metrics"]["epochs_run"] == 3


def test_evaluate_reports_leak_free_figures(trained, dataset, capsys):
    rc = main(["evaluate", "--data", str(dataset / "val"), "--model", str(trained / "model"),
               "--train-dir", str(dataset / "train"), "--belt", "--belt-per-photo", "2", "--json",
               "--out", str(trained / "eval")])
    assert rc == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["summary"]["leaked"] == 1
    assert doc["reports"]["photo"]["single"]["leak_free"]["n"] == 6
    assert doc["reports"]["belt"]["single"]["all"]["n"] == 14
    assert (trained / "eval" / "eval.json").is_file() and (trained / "eval" / "misclassified.csv").is_file()


def test_evaluate_on_crops_cut_from_videos_keeps_same_named_videos_apart(trained, dataset, tmp_path, capsys):
    a, b = tmp_path / "a" / "belt", tmp_path / "b" / "belt"
    for prefix, seed in ((a, 1), (b, 2)):
        assert load_tool("make_belt_video").main(["--images", str(dataset / "val"), "--out", str(prefix), "--seconds",
                                              "2", "--fps", "30", "--size", "320x180", "--rate", "4",
                                              "--seed", str(seed)]) == 0
    capsys.readouterr()
    rc = main(["evaluate", "--data", str(dataset / "val"), "--model", str(trained / "model"), "--json",
               "--video", str(a), "--video", str(b)])
    assert rc == 0
    reports = json.loads(capsys.readouterr().out)["reports"]
    crossing = []  # items whose line crossing is inside the video (60 frames)
    for p in (a, b):
        rows = [json.loads(line) for line in open(f"{p}.gt.jsonl")]
        crossing.append(sum(1 for r in rows if r.get("frame_at_line") is not None and r["frame_at_line"] < 60))
    assert min(crossing) > 0 and crossing[0] != crossing[1]
    assert [reports[k]["single"]["all"]["n"] for k in ("video_belt", "video_belt_2")] == crossing


def test_resize_model_serves_the_weights_at_another_size_recalibrated(trained, dataset, tmp_path, capsys):
    out = tmp_path / "m40"
    assert load_tool("resize_model").main([str(trained / "model"), "--input-size", "40", "--out", str(out),
                                       "--data", str(dataset / "val"), "--train-dir", str(dataset / "train"),
                                       "--belt-per-photo", "1"]) == 0
    info = json.loads((out / "model.json").read_text())
    fit = info["metrics"]["temperature_fit"]
    assert info["input_size"] == 40 and info["temperature"] == fit["temperature"]
    assert fit["nll_fitted"] <= fit["nll_t1"] + 1e-9 and fit["n"] == 6 + 6  # leak-free photos + belt crops
    assert info["metrics"]["val"]["photo"]["single"]["all"]["n"] == 7
    from ewaste_stream.model import load_classifier

    probs = load_classifier(out, backend="onnx", device="cpu", threads=1).predict([np.zeros((50, 50, 3), np.uint8)])
    assert probs.shape == (1, 2) and abs(float(probs.sum()) - 1.0) < 1e-5
    with pytest.raises(SystemExit):
        load_tool("resize_model").main([str(trained / "model"), "--input-size", "40", "--out", str(trained / "model"),
                                    "--data", str(dataset / "val")])


def test_weight_average_is_validated_selected_and_resumed(dataset, tmp_path):
    import torch

    work = tmp_path / "work"
    assert _train(dataset, tmp_path / "m", work, 1, "--ema-decay", "0.5") == 0
    last, best = (torch.load(work / f, weights_only=True) for f in ("last.pt", "best.pt"))
    assert set(last["ema"]) == set(last["model"])
    moved = [k for k, v in last["model"].items() if v.is_floating_point() and not torch.equal(v, last["ema"][k])]
    assert moved  # the average lags the trained weights ...
    assert all(torch.equal(best["model"][k], v) for k, v in last["ema"].items())  # ... and is what best.pt holds
    assert _train(dataset, tmp_path / "m", work, 2, "--ema-decay", "0.5", "--resume", "auto") == 0
    again = torch.load(work / "last.pt", weights_only=True)
    assert again["epoch"] == 2 and not torch.equal(again["ema"][moved[0]], last["ema"][moved[0]])


def test_average_checkpoints_writes_a_recalibrated_soup(trained, dataset, tmp_path, capsys):
    work, out = trained / "work", tmp_path / "soup"
    ckpts = [str(work / "best.pt"), str(work / "last.pt")]
    assert load_tool("average_checkpoints").main([*ckpts, "--like", str(trained / "model"), "--input-size", "40",
                                              "--out", str(out), "--data", str(dataset / "val"),
                                              "--train-dir", str(dataset / "train"), "--belt-per-photo", "1",
                                              "--weights", "3", "1"]) == 0
    info = json.loads((out / "model.json").read_text())
    fit = info["metrics"]["temperature_fit"]
    assert [a["weight"] for a in fit["averaged_from"]] == [0.75, 0.25]
    assert info["input_size"] == 40 and info["temperature"] == fit["temperature"] and fit["n"] == 12
    assert info["metrics"]["val"]["belt"]["single"]["leak_free"]["n"] == 6
    assert (out / "model.onnx").is_file() and (out / "eval_val.json").is_file()
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    assert load_tool("average_checkpoints").main([ckpts[0], str(bad), "--like", str(trained / "model"),
                                              "--out", str(tmp_path / "x"), "--data", str(dataset / "val")]) == 2
    assert "bad.pt" in capsys.readouterr().err and not (tmp_path / "x").exists()


def test_refit_head_on_train_video_crops_writes_a_recalibrated_folder(trained, dataset, tmp_path, capsys):
    train_video, val_video = tmp_path / "t" / "belt", tmp_path / "v" / "belt"
    for prefix, images in ((train_video, "train"), (val_video, "val")):
        assert load_tool("make_belt_video").main(["--images", str(dataset / images), "--out", str(prefix), "--seconds",
                                              "2", "--fps", "30", "--size", "320x180", "--rate", "4",
                                              "--seed", "3"]) == 0
    out = tmp_path / "refit"
    common = ["--like", str(trained / "model"), "--data", str(dataset / "val"), "--train-dir", str(dataset / "train"),
              "--belt-per-photo", "1"]
    assert load_tool("refit_head").main([*common, "--videos", str(train_video), "--photos", str(dataset / "train"),
                                         "--out", str(out)]) == 0
    info = json.loads((out / "model.json").read_text())
    fit = info["metrics"]["temperature_fit"]
    refit = fit["head_refit"]
    assert refit["views"][str(dataset / "train")] == 16 and refit["views"][str(train_video)] > 0
    assert refit["cut"] == "pipeline" and "frames" not in refit
    assert refit["base"]["version"] == json.loads((trained / "model" / "model.json").read_text())["version"]
    assert info["version"].endswith("-headrefit") and info["temperature"] == fit["temperature"]
    assert (out / "model.onnx").is_file() and info["metrics"]["val"]["photo"]["single"]["all"]["n"] == 7
    # the backbone is kept, the head moved
    from ewaste_stream.model import load_torch_model

    old, _ = load_torch_model(trained / "model")
    new, _ = load_torch_model(out)
    olds, news = old.state_dict(), new.state_dict()
    head = {k for k in olds if k.startswith("classifier.")}
    assert head and all(np.allclose(olds[k].float(), news[k].float()) for k in olds if k not in head)
    assert any(not np.allclose(olds[k].float(), news[k].float()) for k in head)
    # crops of the val photos are what the result is checked on: refused, named, exit 2
    capsys.readouterr()
    assert load_tool("refit_head").main([*common, "--videos", str(val_video), "--out", str(tmp_path / "x")]) == 2
    assert "val photos" in capsys.readouterr().err and not (tmp_path / "x").exists()
    # crops cut at the ground truth's boxes instead
    assert load_tool("refit_head").main([*common, "--videos", str(train_video), "--out", str(tmp_path / "line"),
                                         "--views", "line", "--frames", "2", "--step", "5"]) == 0
    refit = json.loads((tmp_path / "line" / "model.json").read_text())["metrics"]["temperature_fit"]["head_refit"]
    assert refit["cut"] == "line" and (refit["frames"], refit["step"]) == (2, 5)


def test_refit_head_top_blocks_of_a_model_without_blocks_is_refused_before_any_replay(trained, dataset, tmp_path,
                                                                                       capsys):
    out = tmp_path / "top"
    assert load_tool("refit_head").main(["--like", str(trained / "model"), "--videos", str(tmp_path / "none"),
                                         "--out", str(out), "--data", str(dataset / "val"), "--top-blocks", "1"]) == 2
    err = capsys.readouterr().err
    assert "--top-blocks" in err and "only EfficientNet" in err and not out.exists()


def test_pipeline_views_are_what_the_classifier_sees_labelled_by_the_matched_item(dataset, tmp_path):
    """``head_refit.pipeline_views``: the crops the pipeline classifies on a video of the train photos,
    each labelled with the ground-truth item its track was decided as. The classes' photos differ
    by colour (a red disc, a blue box), so a crop's colour says whether its label is right; the
    classifier (a stub that always says Battery) has no say in the labels."""
    from ewaste_stream.config import load_config
    from ewaste_stream.testing import StubClassifier
    from ewaste_stream.training.head_refit import pipeline_views

    prefix = tmp_path / "t" / "belt"
    assert load_tool("make_belt_video").main(["--images", str(dataset / "train"), "--out", str(prefix), "--seconds",
                                              "3", "--fps", "30", "--size", "320x180", "--rate", "4",
                                              "--seed", "5"]) == 0
    config = load_config(None, {"batching": {"stop_confidence": None}})
    crops, labels = pipeline_views(prefix, config, StubClassifier(CLASSES), forbidden_images=dataset / "val")
    assert len(crops) == len(labels) >= 8 and set(labels) == {0, 1}
    red = [int(((c[..., 0] > 150) & (c[..., 2] < 80)).sum() > ((c[..., 2] > 150) & (c[..., 0] < 80)).sum())
           for c in crops]
    assert np.mean(np.array(red) == (labels == 0)) > 0.9
    with pytest.raises(DatasetError, match="val photos"):
        pipeline_views(prefix, config, StubClassifier(CLASSES), forbidden_images=dataset / "train")


@pytest.mark.parametrize("argv, code", [
    (["--data", "/nonexistent"], 2),                      # missing dataset folder
    (["--epochs", "0"], 2),                               # out of bounds
])
def test_bad_training_input_exits_2(tmp_path, argv, code):
    assert main(["train", "--out", str(tmp_path / "m"), "--data", str(tmp_path), *argv]) == code


@pytest.mark.parametrize("tool_name, argv", [
    ("resize_model", ["/nonexistent/model", "--input-size", "40", "--out", "OUT", "--data", "DATA"]),
    ("orientation_study", ["--model", "/nonexistent/model", "--data", "DATA"]),
    ("average_checkpoints", ["/nonexistent/best.pt", "--like", "MODEL", "--out", "OUT", "--data", "DATA"]),
    ("orientation_study", ["--model", "MODEL", "--data", "/nonexistent/val"]),
    ("refit_head", ["--like", "/nonexistent/model", "--videos", "V", "--out", "OUT", "--data", "DATA"]),
    ("refit_head", ["--like", "MODEL", "--videos", "V", "--out", "OUT", "--data", "DATA",
                    "--config", "/nonexistent/c.yaml"]),
])
def test_tools_name_a_missing_folder_and_exit_2(trained, dataset, tmp_path, capsys, tool_name, argv):
    subst = {"OUT": str(tmp_path / "o"), "DATA": str(dataset / "val"), "MODEL": str(trained / "model")}
    assert load_tool(tool_name).main([subst.get(a, a) for a in argv]) == 2
    assert "/nonexistent/" in capsys.readouterr().err
