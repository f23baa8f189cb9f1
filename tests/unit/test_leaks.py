"""dHash (as the dataset README defines it) and the train/eval leak finder."""

import csv
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ewaste_stream.training.leaks import dhash, find_leaks, hamming

# the dataset is staged in ../shared beside the checkout (dev machines and CI); EWASTE_DATA overrides
DATASET = Path(os.environ.get("EWASTE_DATA", Path(__file__).resolve().parents[3] / "shared" / "datasets" / "ewaste"))


def _gradient(decreasing: bool) -> Image.Image:
    row = np.arange(9, dtype=np.uint8) * 25
    row = row[::-1] if decreasing else row
    return Image.fromarray(np.tile(row, (8, 1)), "L")


@pytest.mark.parametrize("decreasing, expected", [(True, (1 << 64) - 1), (False, 0)])
def test_dhash_bit_order_and_direction(decreasing, expected):
    # a 9x8 image is not resized; every pixel brighter than its right neighbour -> all ones
    assert dhash(_gradient(decreasing)) == expected


def test_dhash_first_bit_is_most_significant():
    a = np.full((8, 9), 100, np.uint8)
    a[0, 0] = 200  # only the top-left comparison is "brighter than right neighbour"
    assert dhash(Image.fromarray(a, "L")) == 1 << 63


@pytest.mark.skipif(not (DATASET / "MANIFEST.csv").is_file(), reason="dataset not staged")
def test_dhash_matches_the_dataset_manifest():
    rows = list(csv.DictReader(open(DATASET / "MANIFEST.csv", encoding="utf-8")))[::300]
    for r in rows:
        assert f"{dhash(DATASET / r['split'] / r['class'] / r['file']):016x}" == r["dhash"]


def _photo(path: Path, seed: int, quality: int = 90) -> Path:
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (6, 6, 3), dtype=np.uint8)  # smooth structure survives re-encoding
    Image.fromarray(small).resize((150, 150), Image.BICUBIC).save(path, quality=quality)
    return path


def test_find_leaks_finds_exact_and_reencoded_copies(tmp_path):
    train, val = tmp_path / "train", tmp_path / "val"
    train.mkdir()
    val.mkdir()
    originals = [_photo(train / f"t{i}.jpg", seed=i) for i in range(6)]
    exact = Path(shutil.copy(originals[0], val / "exact.jpg"))
    reencoded = val / "reencoded.jpg"
    Image.open(originals[1]).save(reencoded, quality=60)
    fresh = _photo(val / "fresh.jpg", seed=99)
    leaks = {lk.eval_path.name: lk for lk in find_leaks([exact, reencoded, fresh], originals)}
    assert set(leaks) == {"exact.jpg", "reencoded.jpg"}
    assert leaks["exact.jpg"].exact and leaks["exact.jpg"].train_path == originals[0]
    assert not leaks["reencoded.jpg"].exact and leaks["reencoded.jpg"].distance <= 3
    assert leaks["reencoded.jpg"].train_path == originals[1]
    assert leaks["exact.jpg"].to_dict()["byte_identical"] is True


def test_no_training_images_means_no_leaks(tmp_path):
    assert find_leaks([_photo(tmp_path / "a.jpg", 1)], []) == []


@pytest.mark.parametrize("a, b, expected", [(0, 0, 0), (0b1011, 0b0001, 2), ((1 << 64) - 1, 0, 64)])
def test_hamming(a, b, expected):
    assert hamming(a, b) == expected
