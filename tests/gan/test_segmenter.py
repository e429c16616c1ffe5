"""The scene segmenter: shapes, config errors, IoU on a hand-computed example, and that it learns."""
import functools

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from jaxmodels import models
from jaxmodels.projects.gan_dissection import scenes
from jaxmodels.projects.gan_dissection import segmenter as exp
from jaxmodels.gan.segmenter import Segmenter, segmenter_from_config

NUM_CLASSES = len(scenes.CLASSES)


def test_shapes_features_and_fully_convolutional():
    model = Segmenter(num_classes=NUM_CLASSES, widths=(8, 16, 32))
    apply = jax.jit(model.apply, static_argnames="method")
    images = np.random.default_rng(0).uniform(-1, 1, (2, 16, 16, 3)).astype(np.float32)
    variables = jax.jit(model.init)(jax.random.key(0, impl="rbg"), images)  # rbg: compiles fast on CPU
    logits = apply(variables, images)
    assert logits.shape == (2, 16, 16, NUM_CLASSES) and logits.dtype == jnp.float32
    features = apply(variables, images, method="features")
    assert features.shape == (2, 32) and np.all(np.asarray(features) >= 0)  # pooled ReLU outputs
    # The same parameters segment any size divisible by 4, and each image's logits are its own.
    single = apply(variables, np.tile(images[1:], (1, 2, 2, 1)))  # [1, 32, 32, 3]
    assert single.shape == (1, 32, 32, NUM_CLASSES)
    with pytest.raises(ValueError, match="divisible by 4"):
        model.apply(variables, images[:, :14, :14])


def test_from_config_and_registry():
    cfg = ml_collections.ConfigDict(dict(name="scene_segmenter", num_classes=NUM_CLASSES, widths=(8, 16)))
    model = models.build_model(cfg)
    assert isinstance(model, Segmenter) and model.widths == (8, 16) and model.num_classes == NUM_CLASSES
    with pytest.raises(ValueError, match="num_classes must be set"):
        segmenter_from_config({"name": "scene_segmenter"})
    with pytest.raises(ValueError, match="unknown model config key"):
        segmenter_from_config({"name": "scene_segmenter", "num_classes": 3, "depth": 4})


def test_iou_on_a_hand_computed_example():
    """target [[0, 0], [1, 1]], predicted [[0, 1], [1, 1]]: class 0 has intersection 1, union 2 (IoU 1/2);
    class 1 intersection 2, union 3 (IoU 2/3); 3 of 4 pixels right. A second image with mask 0 is ignored,
    and class 2 (never present nor predicted) has no IoU."""
    target = jnp.array([[[0, 0], [1, 1]], [[2, 2], [2, 2]]])
    predicted = jnp.array([[[0, 1], [1, 1]], [[0, 0], [0, 0]]])
    mask = jnp.array([1.0, 0.0])[:, None, None]
    confusion = np.asarray(exp.confusion_matrix(predicted, target, 3, mask))
    np.testing.assert_array_equal(confusion, [[1, 1, 0], [0, 2, 0], [0, 0, 0]])
    metrics = exp.segmentation_metrics(confusion, class_names=("a", "b", "c"))
    assert metrics["iou"] == {"a": pytest.approx(0.5), "b": pytest.approx(2 / 3), "c": None}
    assert metrics["pixel_accuracy"] == pytest.approx(0.75)
    assert metrics["mean_iou"] == pytest.approx((0.5 + 2 / 3) / 2)
    assert metrics["pixel_frequency"] == {"a": 0.5, "b": 0.5, "c": 0.0}


def test_pixel_cross_entropy_matches_optax():
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(2, 4, 4, 5)).astype(np.float32)
    labels = rng.integers(0, 5, (2, 4, 4))
    expected = optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean(axis=(1, 2))
    np.testing.assert_allclose(jax.jit(exp.pixel_cross_entropy)(logits, labels), expected, rtol=1e-5)


def test_training_beats_the_majority_class():
    """200 Adam steps on 32x32 scenes: held-out pixel accuracy far above always predicting the commonest class."""
    model = Segmenter(num_classes=NUM_CLASSES, widths=(8, 16))
    steps, batch_size = 200, 16
    tx = optax.adam(3e-3)
    images, segmentation = scenes.render_scenes(range(steps * batch_size // 4), seed=0, image_size=32)
    images = images.astype(np.float32) / 127.5 - 1.0
    state = jax.jit(exp.make_init_state(model, tx, 32))(jax.random.PRNGKey(0))
    step = jax.jit(functools.partial(exp.train_step, model=model, tx=tx, lr_schedule=lambda s: 3e-3))
    order = np.random.default_rng(0).permutation(np.resize(np.arange(len(images)), steps * batch_size))
    for rows in order.reshape(steps, batch_size):
        state, metrics = step(state, {"image": images[rows], "segmentation": segmentation[rows]})
    held_images, held_seg = scenes.render_scenes(scenes.TEST_INDEX_OFFSET + np.arange(64), seed=0, image_size=32)
    logits = jax.jit(model.apply)({"params": state["params"]}, held_images.astype(np.float32) / 127.5 - 1.0)
    accuracy = float(np.mean(np.argmax(logits, -1) == held_seg))
    majority = np.bincount(held_seg.ravel()).max() / held_seg.size
    assert majority < 0.45 and accuracy > 0.8, (accuracy, majority)  # ~0.93 after 200 steps
