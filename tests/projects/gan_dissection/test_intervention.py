"""Tests for jaxmodels.projects.gan_dissection.intervention (Bau et al. 2019 sec. 3.2; official netdissect/aceoptimize.py)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxmodels.projects.gan_dissection import intervention as I
from jaxmodels.projects.gan_dissection.dissection import make_generate_fn, sample_z

# Toy linear "generator": 8 units on a 4x4 grid, r_u = relu(z_u) on the left half of the grid.
# Image channel 0 is unit 3 (nearest-upsampled to 16x16); the toy segmenter's class-1 probability is
# clip(channel 0, 0, 1), so class 1 is drawn exactly where unit 3 exceeds 0.5.
UNITS, CAUSAL, LATENT = 8, 3, 8
PATTERN = jnp.asarray(np.repeat(np.array([[1.0, 1.0, 0.0, 0.0]]), 4, axis=0))  # [4, 4]


def feature_fn(z):
    return jax.nn.relu(z)[:, None, None, :] * PATTERN[None, :, :, None]  # [B, 4, 4, U]


def render_fn(z, alpha, value):
    r = I.blend(feature_fn(z), alpha, value)
    channel0 = jnp.repeat(jnp.repeat(r[..., CAUSAL], 4, axis=1), 4, axis=2)     # [B, 16, 16]
    others = jnp.repeat(jnp.repeat(r.mean(-1), 4, axis=1), 4, axis=2)
    return jnp.stack([channel0, others, jnp.zeros_like(others)], -1)


def segment_fn(images):
    p1 = jnp.clip(images[..., 0], 0.0, 1.0)
    return jnp.stack([1.0 - p1, p1], -1)


generate_fn = make_generate_fn(feature_fn, render_fn)


def test_blend_semantics():
    r = jnp.arange(2 * 1 * 1 * 3, dtype=jnp.float32).reshape(2, 1, 1, 3) + 1
    np.testing.assert_array_equal(I.blend(r, jnp.zeros(3), 5.0), r)                      # alpha = 0: unchanged
    np.testing.assert_array_equal(I.blend(r, jnp.array([1.0, 0, 0]), 0.0)[..., 0], 0.0)  # ablation
    inserted = I.blend(r, jnp.array([[0.0, 1, 0], [0.5, 0, 0]]), jnp.array([7.0, 8.0, 9.0]))
    np.testing.assert_allclose(inserted[0, 0, 0], [1.0, 8.0, 3.0])
    np.testing.assert_allclose(inserted[1, 0, 0], [0.5 * 4 + 0.5 * 7, 5.0, 6.0])
    np.testing.assert_array_equal(I.unit_alpha([1, 3], 4), [0, 1, 0, 1])
    with pytest.raises(ValueError, match="units"):
        I.unit_alpha([4], 4)


def test_adaptive_pool_matches_torch_bins():
    # PyTorch bins for 5 -> 3: [0, 2), [1, 4), [3, 5).
    np.testing.assert_allclose(I.adaptive_pool_matrix(5, 3),
                               [[0.5, 0.5, 0, 0, 0], [0, 1 / 3, 1 / 3, 1 / 3, 0], [0, 0, 0, 0.5, 0.5]], rtol=1e-6)
    np.testing.assert_allclose(I.adaptive_pool_matrix(8, 2), np.repeat(np.eye(2), 4, axis=1) / 4)


def test_class_statistics_insertion_value_is_weighted_mean_where_present():
    stats = I.class_statistics(generate_fn, segment_fn, 1, latent_dim=LATENT, num_samples=30, seed=10, batch_size=16)
    z = np.asarray(sample_z(10, np.arange(30), LATENT))
    r = np.maximum(z, 0)                                                   # [N, U] on the left half
    present = r[:, CAUSAL] > 0.5                                           # class drawn on the left half
    np.testing.assert_allclose(stats.fraction, present * 0.5)
    np.testing.assert_allclose(stats.presence, present * 1.0)
    # k_u = sum r_u * pooled mask / sum pooled mask = mean of r_u over samples where the class is present.
    np.testing.assert_allclose(stats.insertion_value, r[present].mean(0), rtol=1e-5)
    train, held_out = I.select_samples(stats.presence, 3, 2)
    assert np.all(present[train]) and np.all(present[held_out]) and train.max() < held_out.min()


def test_select_samples_follows_the_official_split():
    scores = np.array([0.1, 0.9, 0.5, 0.8, 0.0, 0.7])
    train, held_out = I.select_samples(scores, 2, 2)          # top 4 = {1, 3, 5, 2}, sorted by index
    np.testing.assert_array_equal(train, [1, 2])
    np.testing.assert_array_equal(held_out, [3, 5])
    low, _ = I.select_samples(scores, 2, 0, largest=False)
    np.testing.assert_array_equal(low, [0, 4])


def test_average_causal_effect_hand_checked():
    k = np.full(UNITS, 0.7, np.float32)
    causal = I.average_causal_effect(render_fn, segment_fn, 1, [CAUSAL], k, latent_dim=LATENT, num_samples=12,
                                     batch_size=8)
    # Insertion sets unit 3 to 0.7 everywhere: p1 = 0.7, every pixel argmax class 1; ablation: p1 = 0.
    assert causal["ace_soft"] == pytest.approx(0.7, abs=1e-5)  # float32 sums over pixels
    assert causal["ace"] == pytest.approx(1.0)
    assert causal["ablated"] == 0.0 and causal["inserted"] == 1.0
    other = I.average_causal_effect(render_fn, segment_fn, 1, [5, 6], k, latent_dim=LATENT, num_samples=12,
                                    batch_size=8)
    assert other["ace"] == 0.0 and other["ace_soft"] == pytest.approx(0.0, abs=1e-7)
    # The empty set (alpha = 0) leaves every image unchanged.
    empty = I.average_causal_effect(render_fn, segment_fn, 1, [], k, latent_dim=LATENT, num_samples=12, batch_size=8)
    assert empty["inserted"] == empty["ablated"] == empty["original"] == other["original"]
    assert empty["inserted_soft"] == pytest.approx(empty["original_soft"])


def test_ablation_curve_top_unit_removes_class_random_units_do_not():
    curve = I.ablation_curve(render_fn, segment_fn, 1, [CAUSAL, 0, 1, 2, 4, 5, 6, 7], num_units=UNITS,
                             latent_dim=LATENT, num_samples=24, sizes=(1, 2, 4), num_random=6, batch_size=16)
    np.testing.assert_allclose(curve["top"], 1.0)
    assert curve["original_pixels"] > 0
    for n, draws, fractions in zip(curve["sizes"], curve["random_units"], curve["random"]):
        assert all(len(units) == n for units in draws)
        np.testing.assert_allclose(fractions, [1.0 if CAUSAL in units else 0.0 for units in draws])
    assert curve["random_mean"][0] < 0.5
    with pytest.raises(ValueError, match="sizes"):
        I.ablation_curve(render_fn, segment_fn, 1, [0, 1], num_units=UNITS, latent_dim=LATENT, num_samples=4,
                         sizes=(3,))


def test_alpha_optimisation_recovers_the_causal_unit():
    stats = I.class_statistics(generate_fn, segment_fn, 1, latent_dim=LATENT, num_samples=200, seed=10, batch_size=100)
    present_train, present_eval = I.select_samples(stats.presence, 30, 15)
    absent = I.class_statistics(generate_fn, segment_fn, 1, latent_dim=LATENT, num_samples=100, seed=11,
                                batch_size=100)
    candidate_train, candidate_eval = I.select_samples(absent.fraction, 30, 15, largest=False)
    assert np.all(stats.presence[present_train] == 1) and np.all(absent.fraction[candidate_train] == 0)
    z10 = np.asarray(sample_z(10, np.arange(200), LATENT))
    z11 = np.asarray(sample_z(11, np.arange(100), LATENT))
    result = I.optimize_unit_set(
        render_fn, segment_fn, 1, stats.insertion_value, z10[present_train], z11[candidate_train],
        eval_present_z=z10[present_eval], eval_candidate_z=z11[candidate_eval],
        init_alpha=np.full(UNITS, 0.5), epochs=10, batch_size=20, top_n=1)
    assert result.ranking[0] == CAUSAL
    assert result.alpha[CAUSAL] > 0.6
    assert np.all(np.delete(result.alpha, CAUSAL) < 0.4)          # only the l2 term acts on the others
    assert np.all((result.alpha >= 0) & (result.alpha <= 1))
    assert result.eval_loss[-1] < result.eval_loss[0]
    # Discrete top-1 evaluation: with all alphas equal unit 0 is "top" (nothing erased, nothing added:
    # loss 1 - 0); after training unit 3 erases everything and inserts everywhere: loss 0 - 1.
    assert result.eval_top_n_loss[0] == pytest.approx(1.0)
    assert result.eval_top_n_loss[-1] == pytest.approx(-1.0)


def _context_render(z, alpha, value):
    """Class 1 appears where unit CAUSAL exceeds 0.5, but only on the left half of the grid (its 'context')."""
    r = I.blend(jnp.zeros((z.shape[0], 4, 4, UNITS)) + 0.0 * z[:, None, None, :], alpha, value)
    channel0 = jnp.repeat(jnp.repeat(r[..., CAUSAL] * PATTERN, 4, axis=1), 4, axis=2)
    return jnp.stack([channel0, jnp.zeros_like(channel0), jnp.zeros_like(channel0)], -1)


def test_window_alpha_and_region():
    alpha = I.window_alpha([1, 2], 3, (4, 4), 1, 2, 2)
    assert alpha.shape == (1, 4, 4, 3)
    np.testing.assert_array_equal(alpha[0, 1:3, 2:4, 1:], 1.0)
    assert alpha.sum() == 8
    region = I.window_region((4, 4), (16, 16), 1, 2, 2)
    assert region.sum() == 64 and region[4:12, 8:16].all()
    np.testing.assert_array_equal(I.window_locations((4, 4), 2, 2), [[0, 0], [0, 2], [2, 0], [2, 2]])
    with pytest.raises(ValueError, match="outside"):
        I.window_alpha([0], 3, (4, 4), 3, 0, 2)
    with pytest.raises(ValueError, match="does not fit"):
        I.window_locations((4, 4), 5)


def test_insertion_at_locations_gain_follows_the_context():
    k = np.zeros(UNITS, np.float32)
    k[CAUSAL] = 0.9
    z = np.asarray(sample_z(0, np.arange(5), LATENT))
    res = I.insertion_at_locations(_context_render, segment_fn, 1, [CAUSAL], k, grid=(4, 4), z=z, window=2,
                                   batch_size=3)
    assert res["locations"] == [[y, x] for y in range(3) for x in range(3)]
    np.testing.assert_array_equal(res["before"], 0.0)
    np.testing.assert_array_equal(res["image_before"], 0.0)
    # Window columns {0, 1}: all left half -> the whole window becomes class 1; {1, 2}: half; {2, 3}: none.
    expected = np.tile([1.0, 0.5, 0.0], 3)
    np.testing.assert_allclose(res["mean_gain"], expected)
    np.testing.assert_allclose(np.asarray(res["image_after"]), np.tile(expected * 4 / 16, (5, 1)))
    np.testing.assert_array_equal(res["best_location"], 0)
    # A unit that does not draw the class inserts nothing anywhere.
    other = I.insertion_at_locations(_context_render, segment_fn, 1, [0], k + 0.9, grid=(4, 4), z=z, window=2)
    np.testing.assert_array_equal(other["gain"], 0.0)
