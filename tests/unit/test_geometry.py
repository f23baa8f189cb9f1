"""Image <-> belt mappings and the calibration helpers."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ewaste_stream.config import BeltMapping, Config
from ewaste_stream.geometry import BeltMap, cameras_from_meta, homography_from_marks, mapping_from_meta


def test_identity_and_offset_scale():
    pts = np.array([[0.0, 0.0], [100.0, 50.0]])
    assert np.allclose(BeltMap.identity().to_belt(pts), pts)
    m = BeltMap.from_config(BeltMapping(offset=(10.0, 5.0), scale=(2.0, 0.5)))
    assert np.allclose(m.to_belt(pts), [[-20.0, -2.5], [180.0, 22.5]])
    assert np.allclose(m.to_image(m.to_belt(pts)), pts)


def test_right_to_left_belt_flips_the_travel_axis():
    m = BeltMap.identity("right_to_left")
    assert m.to_belt(np.array([[100.0, 7.0]]))[0].tolist() == [-100.0, 7.0]
    du, dv = m.image_shift_to_belt(-12.0, 0.0, (50.0, 50.0))  # moving left in the image = downstream
    assert du == pytest.approx(12.0) and dv == pytest.approx(0.0)


@pytest.mark.parametrize("direction", ["left_to_right", "right_to_left"])
def test_point_and_box_to_belt_agree_with_the_array_mapping(direction):
    """The tracker's one-point path gives what ``to_belt`` gives, projective maps included."""
    h = np.array([[1.02, 0.03, -12.0], [-0.01, 0.97, 8.0], [2e-4, -1e-4, 1.1]])
    rng = np.random.default_rng(0)
    for m in (BeltMap(h, direction), BeltMap.from_config(BeltMapping(offset=(10.0, 5.0), scale=(2.0, 0.5)), direction)):
        pts = rng.uniform(0, 1280, (20, 2))
        assert np.allclose([m.point_to_belt(x, y) for x, y in pts], m.to_belt(pts), rtol=0, atol=1e-9)
        x0, y0, x1, y1 = 100.0, 40.0, 300.0, 260.0
        corners = m.to_belt(np.array([[x0, y0], [x1, y0], [x0, y1], [x1, y1]]))
        assert np.allclose(m.box_to_belt((x0, y0, x1, y1)), [*corners.min(axis=0), *corners.max(axis=0)], atol=1e-9)


def test_homography_from_marks_recovers_a_known_mapping():
    h = np.array([[1.02, 0.03, -12.0], [-0.01, 0.97, 8.0], [2e-5, -1e-5, 1.0]])
    img = np.array([[0, 0], [1280, 0], [1280, 720], [0, 720], [640, 360]], float)
    belt = BeltMap(h).to_belt(img)
    est = BeltMap(np.array(homography_from_marks(img, belt)))
    assert np.allclose(est.to_belt(img), belt, atol=1e-6)


@pytest.mark.parametrize("img,belt,match", [
    ([[0, 0], [1, 0], [0, 1]], [[0, 0], [1, 0], [0, 1]], "at least 4"),
    ([[0, 0], [1, 1], [2, 2], [3, 3]], [[0, 0], [1, 1], [2, 2], [3, 3]], "degenerate"),
])
def test_homography_from_marks_refuses_bad_marks(img, belt, match):
    with pytest.raises(ValueError, match=match):
        homography_from_marks(img, belt)


def test_singular_mapping_is_refused():
    with pytest.raises(ValueError, match="invertible"):
        BeltMap(np.zeros((3, 3)))


def test_mapping_from_simulator_meta(tmp_path):
    h = [[1.0, 0.02, -5.0], [0.0, 1.01, 3.0], [0.0, 0.0, 1.0]]
    meta = {"cameras": [{"camera": "cam0", "image_to_belt": np.eye(3).tolist()},
                        {"camera": "cam1", "image_to_belt": h}]}
    path = tmp_path / "v.meta.json"
    path.write_text(json.dumps(meta))
    assert mapping_from_meta(path, 1).homography == h
    assert mapping_from_meta(meta, 5) == BeltMapping()  # not described: identity
    cfg = cameras_from_meta(path, Config())
    assert [c.id for c in cfg.cameras] == ["cam0", "cam1"] and cfg.cameras[1].mapping.homography == h
