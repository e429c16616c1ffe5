"""Tests for jaxmodels.data.image: known values, geometry and determinism of each op."""
import ml_collections
import numpy as np
import pytest

from jaxmodels.data import image as image_ops


def _ramp(height, width, channels=1):
    """uint8 image whose value at (y, x) encodes its position, so crops can be located."""
    y, x = np.meshgrid(np.arange(height), np.arange(width), indexing="ij")
    plane = ((y * 7 + x * 3) % 251).astype(np.uint8)
    return np.repeat(plane[..., None], channels, axis=-1)


def _windows(padded, height, width):
    """All ``[height, width]`` windows of ``padded``."""
    return [padded[t:t + height, l:l + width]
            for t in range(padded.shape[0] - height + 1) for l in range(padded.shape[1] - width + 1)]


def _data_cfg(**overrides):
    cfg = dict(augment="none", image_size=8, mean=(0.5,), std=(0.25,))
    cfg.update(overrides)
    return ml_collections.ConfigDict(cfg)


def test_normalize_known_values():
    image = np.array([[[0, 255, 51]]], np.uint8)  # [1, 1, 3]
    out = image_ops.normalize(image, mean=(0.0, 0.5, 0.2), std=(1.0, 0.25, 0.5))
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, [[[0.0, 2.0, 0.0]]], atol=1e-6)
    out = image_ops.normalize(image, mean=(0.5,), std=(0.25,))
    np.testing.assert_allclose(out, [[[-2.0, 2.0, -1.2]]], atol=1e-6)


def test_random_shift_is_a_zero_filled_translation_within_range():
    image = _ramp(8, 8) + 1  # no zeros, so the fill is visible
    max_shift = 2
    padded = np.pad(image, ((max_shift,) * 2, (max_shift,) * 2, (0, 0)))
    candidates = _windows(padded, 8, 8)
    seen = set()
    for seed in range(60):
        out = image_ops.random_shift(image, np.random.default_rng(seed), max_shift)
        assert out.shape == image.shape and out.dtype == image.dtype
        matches = [i for i, c in enumerate(candidates) if np.array_equal(out, c)]
        assert len(matches) == 1
        seen.add(matches[0])
    assert len(seen) > 15  # of 25 possible shifts: the offsets really vary


def test_pad_and_random_crop_shape_and_identity_without_padding():
    image = _ramp(32, 32, 3)
    out = image_ops.pad_and_random_crop(image, np.random.default_rng(0), padding=4)
    assert out.shape == (32, 32, 3)
    assert any(np.array_equal(out, w) for w in _windows(np.pad(image, ((4, 4), (4, 4), (0, 0))), 32, 32))
    np.testing.assert_array_equal(image_ops.pad_and_random_crop(image, np.random.default_rng(0), padding=0), image)


def test_random_flip_flips_half_the_time():
    image = _ramp(4, 6)
    outs = [image_ops.random_flip(image, np.random.default_rng(s)) for s in range(200)]
    flipped = sum(np.array_equal(o, image[:, ::-1]) for o in outs)
    assert all(np.array_equal(o, image) or np.array_equal(o, image[:, ::-1]) for o in outs)
    assert 70 < flipped < 130


def test_inception_crop_output_size():
    image = _ramp(40, 60, 3)
    for seed in range(5):
        out = image_ops.inception_crop(image, np.random.default_rng(seed), size=24)
        assert out.shape == (24, 24, 3) and out.dtype == np.uint8


def test_inception_crop_full_scale_square_ratio_is_a_resize():
    image = _ramp(20, 20, 3)
    out = image_ops.inception_crop(image, np.random.default_rng(0), size=12, scale=(1.0, 1.0), ratio=(1.0, 1.0))
    np.testing.assert_array_equal(out, image_ops.resize(image, (12, 12)))


def test_inception_crop_takes_a_window_of_the_requested_area():
    image = _ramp(16, 16)
    for seed in range(5):
        out = image_ops.inception_crop(image, np.random.default_rng(seed), size=8, scale=(0.25, 0.25), ratio=(1.0, 1.0))
        assert any(np.array_equal(out, w) for w in _windows(image, 8, 8))  # 8x8 crop, resized 8 -> 8


def test_inception_crop_falls_back_to_central_crop():
    image = _ramp(16, 16)
    # A 2:1 (w:h) box with the whole area never fits, so all 10 attempts fail.
    out = image_ops.inception_crop(image, np.random.default_rng(0), size=8, scale=(1.0, 1.0), ratio=(2.0, 2.0))
    np.testing.assert_array_equal(out, image_ops.resize(image[4:12], (8, 8)))


def test_resize_small_and_central_crop_geometry():
    image = _ramp(40, 80)
    # shorter side 40 == 32 / 0.8, so no resize: a centred 32x32 window.
    out = image_ops.resize_small_and_central_crop(image, 32, crop_fraction=0.8)
    np.testing.assert_array_equal(out, image[4:36, 24:56])
    tall = _ramp(100, 60, 3)
    out = image_ops.resize_small_and_central_crop(tall, 24)
    # shorter side 60 -> round(24 / 0.875) = 27, longer 100 -> 45; centre 24x24 starts at (10, 1).
    np.testing.assert_array_equal(out, image_ops.resize(tall, (45, 27))[10:34, 1:25])


def test_build_preprocess_eval_normalises_and_resizes_without_randomness():
    record = {"image": _ramp(16, 16), "label": np.int64(3)}
    preprocess = image_ops.build_preprocess(_data_cfg(augment="crop_flip"), train=False)
    out = preprocess(record, None)
    assert out["image"].shape == (8, 8, 1) and out["image"].dtype == np.float32
    assert out["label"].dtype == np.int32 and out["label"] == 3
    expected = image_ops.normalize(image_ops.resize(record["image"], (8, 8)), (0.5,), (0.25,))
    np.testing.assert_allclose(out["image"], expected)


def test_build_preprocess_inception_eval_is_the_central_crop():
    record = {"image": _ramp(40, 60, 3), "label": 1}
    cfg = _data_cfg(augment="inception", image_size=16, mean=(0.1, 0.2, 0.3), std=(0.5, 0.5, 0.5))
    out = image_ops.build_preprocess(cfg, train=False)(record, None)
    expected = image_ops.normalize(image_ops.resize_small_and_central_crop(record["image"], 16), cfg.mean, cfg.std)
    np.testing.assert_allclose(out["image"], expected)


@pytest.mark.parametrize("augment", ["shift", "crop_flip", "inception"])
def test_build_preprocess_train_is_random_but_seeded(augment):
    record = {"image": _ramp(8, 8), "label": 7}
    preprocess = image_ops.build_preprocess(_data_cfg(augment=augment), train=True)
    outs = [preprocess(record, np.random.default_rng(s))["image"] for s in range(6)]
    assert all(o.shape == (8, 8, 1) and o.dtype == np.float32 for o in outs)
    np.testing.assert_array_equal(outs[0], preprocess(record, np.random.default_rng(0))["image"])
    assert any(not np.array_equal(outs[0], o) for o in outs[1:])


def test_build_preprocess_rejects_unknown_augment():
    with pytest.raises(ValueError, match="data.augment"):
        image_ops.build_preprocess(_data_cfg(augment="mixup"), train=True)
