"""Tests for jaxmodels.data.sources: the digits split, TFDS records and config dispatch."""
import ml_collections
import numpy as np
import pytest
import tensorflow_datasets as tfds
from sklearn.datasets import load_digits

from jaxmodels.data import sources

NUM_DIGITS = 1797


def test_digits_split_is_deterministic_disjoint_and_complete():
    train, test = sources.DigitsSource("train", seed=3), sources.DigitsSource("test", seed=3)
    assert len(train) + len(test) == NUM_DIGITS
    assert not set(train.indices) & set(test.indices)
    np.testing.assert_array_equal(sources.DigitsSource("train", seed=3).indices, train.indices)
    assert not np.array_equal(sources.DigitsSource("train", seed=4).indices, train.indices)


def test_digits_split_is_stratified():
    test = sources.DigitsSource("test", seed=0, test_fraction=0.2)
    all_labels = load_digits().target
    test_labels = np.array([test[i]["label"] for i in range(len(test))])
    for digit in range(10):
        expected = 0.2 * np.sum(all_labels == digit)
        assert abs(np.sum(test_labels == digit) - expected) <= 1


def test_digits_records_are_rescaled_uint8():
    train = sources.DigitsSource("train")
    digits = load_digits()
    images = np.stack([train[i]["image"] for i in range(len(train))])
    assert images.shape == (len(train), 8, 8, 1) and images.dtype == np.uint8
    assert images.min() == 0 and images.max() == 255
    record, row = train[5], train.indices[5]
    np.testing.assert_array_equal(record["image"][..., 0], np.round(digits.images[row] * 255 / 16))
    assert record["label"] == digits.target[row] and record["label"].dtype == np.int32


def test_tfds_source_yields_image_label_records_from_mock_data():
    with tfds.testing.mock_data(num_examples=6):
        source = sources.tfds_source("cifar10", "train")
        records = [source[i] for i in range(len(source))]
    assert len(records) == 6
    for record in records:
        assert set(record) == {"image", "label"}
        assert record["image"].shape == (32, 32, 3) and record["image"].dtype == np.uint8
        assert record["label"].dtype == np.int32 and 0 <= record["label"] < 10


def test_tfds_source_missing_dataset_error_says_how_to_prepare(tmp_path):
    with pytest.raises(FileNotFoundError) as error:
        sources.tfds_source("cifar10", "train", data_dir=str(tmp_path))
    message = str(error.value)
    for needle in ("'cifar10'", "'train'", str(tmp_path), "tfds build cifar10", "--file_format=array_record"):
        assert needle in message


def test_build_source_dispatches_on_config():
    digits = sources.build_source(ml_collections.ConfigDict({"source": "digits", "split_seed": 1}), "test")
    assert isinstance(digits, sources.DigitsSource) and digits.split == "test"
    np.testing.assert_array_equal(digits.indices, sources.DigitsSource("test", seed=1).indices)
    with tfds.testing.mock_data(num_examples=3):
        tfds_cfg = ml_collections.ConfigDict({"source": "tfds", "name": "cifar10", "data_dir": None})
        assert len(sources.build_source(tfds_cfg, "test")) == 3


def test_build_source_rejects_unknown_source():
    with pytest.raises(ValueError, match="data.source.*digits.*tfds"):
        sources.build_source(ml_collections.ConfigDict({"source": "imagenet_folder"}), "train")
