"""GAN losses (``jaxmodels.gan.losses``) against hand-derived values and gradients."""
import jax
import jax.numpy as jnp
import numpy as np

from jaxmodels.gan import losses


def test_gradient_penalty_of_linear_critic_is_lambda_norm_minus_one_squared():
    # D(x) = w . x has gradient w everywhere: penalty = (||w|| - 1)^2 at every interpolate
    w = jnp.array([[[3.0, 0.0], [0.0, 4.0]]])  # ||w|| = 5
    real = jnp.asarray(np.random.default_rng(0).standard_normal((6, 1, 2, 2)), jnp.float32)
    fake = jnp.asarray(np.random.default_rng(1).standard_normal((6, 1, 2, 2)), jnp.float32)
    d_fn = lambda x: jnp.sum(x * w, axis=(1, 2, 3))
    penalty, norms = losses.gradient_penalty(d_fn, real, fake, jax.random.key(2, impl="rbg"))
    np.testing.assert_allclose(norms, 5.0, rtol=1e-6)
    np.testing.assert_allclose(penalty, 16.0, rtol=1e-6)
    loss = losses.wgan_gp_discriminator_loss(d_fn(real), d_fn(fake), penalty, gp_lambda=10.0, drift=0.0)
    np.testing.assert_allclose(loss, jnp.mean(d_fn(fake) - d_fn(real)) + 10.0 * 16.0, rtol=1e-5)
    # target 2 (ProGAN's wgan_target): ((5 - 2) / 2)^2
    penalty2, _ = losses.gradient_penalty(d_fn, real, fake, jax.random.key(2, impl="rbg"), target=2.0)
    np.testing.assert_allclose(penalty2, 2.25, rtol=1e-6)


def test_gradient_penalty_of_quadratic_critic_at_the_interpolate():
    # D(x) = 0.5 ||x||^2: grad = x_hat = real + u (fake - real), u ~ U[0, 1] per example, shared by its pixels
    real = jnp.array([[1.0, 0.0], [0.0, 2.0], [3.0, 3.0]])
    fake = jnp.array([[0.0, 1.0], [2.0, 0.0], [-1.0, 3.0]])
    rng = jax.random.key(7, impl="rbg")
    d_fn = lambda x: 0.5 * jnp.sum(x ** 2, axis=1)
    penalty, norms = losses.gradient_penalty(d_fn, real, fake, rng)
    u = np.asarray(jax.random.uniform(rng, (3, 1)))
    x_hat = np.asarray(real) + u * (np.asarray(fake) - np.asarray(real))
    np.testing.assert_allclose(losses.interpolate(real, fake, rng), x_hat, rtol=1e-6)
    expected_norms = np.linalg.norm(x_hat, axis=1)
    np.testing.assert_allclose(norms, expected_norms, rtol=1e-5)
    np.testing.assert_allclose(penalty, (expected_norms - 1.0) ** 2, rtol=1e-5)
    assert np.all((u >= 0) & (u <= 1)) and len(set(u.ravel().tolist())) == 3  # one u per example


def test_penalty_is_differentiable_in_the_critic_parameters():
    # D_a(x) = a * sum(x): ||grad_x|| = |a| sqrt(n); d/da (|a| sqrt(n) - 1)^2 = 2 (a sqrt(n) - 1) sqrt(n) for a > 0
    real = jnp.ones((2, 4))
    fake = jnp.zeros((2, 4))

    def mean_penalty(a):
        penalty, _ = losses.gradient_penalty(lambda x: a * jnp.sum(x, axis=1), real, fake, jax.random.key(0, impl="rbg"))
        return jnp.mean(penalty)

    a = 0.8
    np.testing.assert_allclose(jax.grad(mean_penalty)(a), 2 * (a * 2.0 - 1.0) * 2.0, rtol=1e-5)


def test_drift_term_and_generator_loss():
    real, fake = jnp.array([2.0, -1.0]), jnp.array([0.5, 1.5])
    zero = jnp.zeros(2)
    loss = losses.wgan_gp_discriminator_loss(real, fake, zero, gp_lambda=10.0, drift=0.001)
    np.testing.assert_allclose(loss, np.mean([0.5 - 2.0 + 0.001 * 4.0, 1.5 + 1.0 + 0.001 * 1.0]), rtol=1e-6)
    np.testing.assert_allclose(losses.wgan_generator_loss(fake), -1.0)


def test_nonsaturating_losses_match_log_sigmoid_formulas_and_gradients():
    real, fake = jnp.array([2.0, -0.5, 0.0]), jnp.array([-1.0, 0.3, 4.0])
    sig = lambda s: 1.0 / (1.0 + np.exp(-np.asarray(s)))
    d_expected = np.mean(-np.log(sig(real)) - np.log(1.0 - sig(fake)))
    np.testing.assert_allclose(losses.nonsaturating_discriminator_loss(real, fake), d_expected, rtol=1e-6)
    np.testing.assert_allclose(losses.nonsaturating_generator_loss(fake), np.mean(-np.log(sig(fake))), rtol=1e-6)
    # d/ds softplus(-s) = -(1 - sigmoid(s)); d/ds softplus(s) = sigmoid(s); the mean divides by 3
    g_real, g_fake = jax.grad(losses.nonsaturating_discriminator_loss, argnums=(0, 1))(real, fake)
    np.testing.assert_allclose(g_real, -(1.0 - sig(real)) / 3, rtol=1e-5)
    np.testing.assert_allclose(g_fake, sig(fake) / 3, rtol=1e-5)
    # non-saturating: the generator's gradient stays large where D confidently rejects (s_fake << 0)
    np.testing.assert_allclose(jax.grad(losses.nonsaturating_generator_loss)(jnp.array([-10.0])),
                               [-(1.0 - sig(-10.0))], rtol=1e-5)


def test_r1_penalty_is_squared_gradient_norm_at_reals():
    w = jnp.array([1.0, 2.0, 2.0])  # ||w||^2 = 9
    penalty, norms = losses.r1_penalty(lambda x: x @ w, jnp.ones((4, 3)))
    np.testing.assert_allclose(norms, 3.0, rtol=1e-6)
    np.testing.assert_allclose(penalty, 9.0, rtol=1e-6)
