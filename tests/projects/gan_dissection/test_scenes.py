"""Procedural scenes: exact class maps, determinism per (seed, index), random access, registration."""
import itertools

import ml_collections
import numpy as np
import pytest

from jaxmodels.data import sources
from jaxmodels.projects.gan_dissection import scenes


@pytest.fixture(scope="module")
def rendered():
    return scenes.render_scenes(range(300), seed=0)


def test_shapes_dtypes_and_sizes(rendered):
    images, segmentation = rendered
    assert images.shape == (300, 64, 64, 3) and images.dtype == np.uint8
    assert segmentation.shape == (300, 64, 64) and segmentation.dtype == np.uint8
    assert segmentation.max() < len(scenes.CLASSES)
    small_images, small_seg = scenes.render_scenes(np.array([4, 7]), seed=0, image_size=32)
    assert small_images.shape == (2, 32, 32, 3) and small_seg.shape == (2, 32, 32)
    empty_images, empty_seg = scenes.render_scenes([], seed=0)
    assert empty_images.shape == (0, 64, 64, 3) and empty_seg.shape == (0, 64, 64)


def test_colour_boxes_are_pairwise_disjoint():
    low, high = scenes.COLOUR_BOUNDS[:, 0], scenes.COLOUR_BOUNDS[:, 1]
    for a, b in itertools.combinations(range(len(scenes.CLASSES)), 2):
        separated = (high[a] < low[b]) | (high[b] < low[a])  # per channel
        assert separated.any(), (scenes.CLASSES[a], scenes.CLASSES[b])


def test_class_map_is_recoverable_from_the_colours(rendered):
    """Every pixel's colour lies in the box of exactly its own class (boxes are disjoint)."""
    images, segmentation = rendered
    low, high = scenes.COLOUR_BOUNDS[:, 0], scenes.COLOUR_BOUNDS[:, 1]
    inside = np.stack([np.all((images >= low[c]) & (images <= high[c]), axis=-1)
                       for c in range(len(scenes.CLASSES))], axis=-1)  # [n, S, S, classes]
    assert np.all(inside.sum(-1) == 1), "a pixel colour lies in no class box or in several"
    np.testing.assert_array_equal(np.argmax(inside, -1), segmentation)


def test_layout_rows(rendered):
    """The horizon is between 0.38 S - 0.075 S and 0.62 S + 0.075 S: the top row is never ground, path or
    pond; the bottom row is never sky, cloud, sun or mountain."""
    _, segmentation = rendered
    index = scenes.CLASS_INDEX
    assert not np.isin(segmentation[:, 0], [index["ground"], index["path"], index["water"]]).any()
    assert not np.isin(segmentation[:, -1], [index[c] for c in ("sky", "cloud", "sun", "mountain")]).any()


def test_texture_is_luminance_noise(rendered):
    """Ground pixels vary (noise of +-10), but by the same offset on every channel: G - R varies only
    through the vertical gradient (|-18 - (-12)| over t in [-1, 1]) and rounding."""
    images, segmentation = rendered
    ground = images[0][segmentation[0] == scenes.CLASS_INDEX["ground"]].astype(int)  # [pixels, 3]
    assert len(np.unique(ground[:, 1])) >= 10
    assert np.ptp(ground[:, 1] - ground[:, 0]) <= 6 * 2 + 1


def test_every_class_appears(rendered):
    _, segmentation = rendered
    counts = np.bincount(segmentation.ravel(), minlength=len(scenes.CLASSES))
    assert np.all(counts > 0), dict(zip(scenes.CLASSES, counts))
    assert counts[scenes.CLASS_INDEX["sky"]] > counts[scenes.CLASS_INDEX["door"]]


def test_scene_depends_only_on_seed_and_index(rendered):
    images, segmentation = rendered
    again_images, again_seg = scenes.render_scenes([17, 3, 250], seed=0)
    np.testing.assert_array_equal(again_images, images[[17, 3, 250]])
    np.testing.assert_array_equal(again_seg, segmentation[[17, 3, 250]])
    assert not np.array_equal(images[0], images[1])
    other_seed, _ = scenes.render_scenes([17], seed=1)
    assert not np.array_equal(other_seed[0], images[17])


def test_chunked_render_equals_single_renders(monkeypatch):
    whole = scenes.render_scenes(range(10), seed=3, image_size=32)
    monkeypatch.setattr(scenes, "CHUNK", 3)
    chunked = scenes.render_scenes(range(10), seed=3, image_size=32)
    for a, b in zip(whole, chunked):
        np.testing.assert_array_equal(a, b)


def test_source_random_access_equals_batch_render():
    images, segmentation = scenes.render_scenes(range(40), seed=2, image_size=32)
    source = scenes.ScenesSource("train", 40, seed=2, image_size=32, block_size=16, cache_blocks=1)
    assert len(source) == 40
    for i in (39, 0, 17, 16, 0, 39):  # across blocks, with evictions (one block cached)
        record = source[i]
        np.testing.assert_array_equal(record["image"], images[i])
        np.testing.assert_array_equal(record["segmentation"], segmentation[i])
        assert record["label"] == 0 and record["label"].dtype == np.int32
    with pytest.raises(IndexError, match="out of range"):
        source[40]


def test_test_split_is_disjoint_from_train():
    test = scenes.ScenesSource("test", 5, seed=2, image_size=32)
    expected, _ = scenes.render_scenes(scenes.TEST_INDEX_OFFSET + np.arange(5), seed=2, image_size=32)
    np.testing.assert_array_equal(test[4]["image"], expected[4])
    train, _ = scenes.render_scenes(range(5), seed=2, image_size=32)
    assert not any(np.array_equal(test[i]["image"], train[i]) for i in range(5))


def test_build_source_scenes():
    cfg = ml_collections.ConfigDict(dict(source="scenes", num_train=30, num_test=7, image_size=32, seed=5))
    train, test = scenes.build_source(cfg, "train"), scenes.build_source(cfg, "test")
    assert isinstance(train, scenes.ScenesSource) and (len(train), len(test)) == (30, 7)
    np.testing.assert_array_equal(train[3]["image"], scenes.render_scenes([3], seed=5, image_size=32)[0][0])
    assert isinstance(scenes.build_source(ml_collections.ConfigDict(dict(source="digits")), "test"), sources.DigitsSource)
    del cfg.num_test
    with pytest.raises(ValueError, match="data.num_test"):
        scenes.build_source(cfg, "test")


@pytest.mark.parametrize("kwargs, message", [
    (dict(indices=range(2), seed=-1), "seed must be a non-negative integer"),
    (dict(indices=range(2), seed=0, image_size=8), "image_size must be an integer >= 16"),
    (dict(indices=np.zeros((2, 2), int), seed=0), "one-dimensional"),
    (dict(indices=[0.5, 1.0], seed=0), "must be integers"),
    (dict(indices=[3, -1], seed=0), "non-negative"),
])
def test_bad_render_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        scenes.render_scenes(**kwargs)


def test_bad_source_arguments():
    with pytest.raises(ValueError, match="split must be 'train' or 'test'"):
        scenes.ScenesSource("validation", 10)
    with pytest.raises(ValueError, match="num_examples must be a positive integer"):
        scenes.ScenesSource("train", 0)
