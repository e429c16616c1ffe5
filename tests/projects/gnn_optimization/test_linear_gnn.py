"""Linearised GNNs (Xu et al., ICML 2021): propagation matrices, closed-form gradients, L*, lambda_min,
rate fit, and the skip-connection speed-up on a small SBM graph."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.sparse as sp

from jaxmodels.projects.gnn_optimization.sbm import make_sbm_graph
from jaxmodels.projects.gnn_optimization import linear_gnn as opt

# 4-node path 0-1-2-3 plus the chord 1-3: degrees (1, 3, 2, 2)
PATH_PLUS_CHORD = np.array([[0, 1, 0, 0],
                            [1, 0, 1, 1],
                            [0, 1, 0, 1],
                            [0, 1, 1, 0]], np.float32)


def test_gcn_propagation_is_symmetric_normalised_adjacency_with_self_loops():
    s = np.asarray(opt.gcn_propagation(PATH_PLUS_CHORD))
    d_tilde = np.array([2.0, 4.0, 3.0, 3.0])  # degrees + 1 (self loop)
    a_tilde = PATH_PLUS_CHORD + np.eye(4)
    expected = np.array([[a_tilde[i, j] / np.sqrt(d_tilde[i] * d_tilde[j]) for j in range(4)] for i in range(4)])
    np.testing.assert_allclose(s, expected, rtol=1e-6)
    assert s[0, 0] == pytest.approx(0.5) and s[0, 1] == pytest.approx(1 / np.sqrt(8))
    assert s[0, 2] == 0.0
    # GCN's S has spectral radius 1 with eigenvector D~^1/2 1
    np.testing.assert_allclose(s @ np.sqrt(d_tilde), np.sqrt(d_tilde), rtol=1e-6)


def test_gin_propagation_and_sparse_matches_dense():
    s = np.asarray(opt.gin_propagation(PATH_PLUS_CHORD, eps=0.25))
    np.testing.assert_allclose(s, PATH_PLUS_CHORD + 1.25 * np.eye(4))
    for aggregation in ("gcn", "gin"):
        dense = np.asarray(opt.propagation_matrix(PATH_PLUS_CHORD, aggregation, eps=0.25))
        sparse = opt.sparse_propagation(sp.csr_matrix(PATH_PLUS_CHORD), aggregation, eps=0.25).todense()
        np.testing.assert_allclose(np.asarray(sparse), dense, rtol=1e-6)
    with pytest.raises(ValueError, match="unknown aggregation"):
        opt.propagation_matrix(PATH_PLUS_CHORD, "gat")


def _problem(seed=0, m0=5, n=12, k=3, num_labelled=7):
    rng = np.random.default_rng(seed)
    upper = np.triu(rng.random((n, n)) < 0.3, 1)
    adjacency = (upper | upper.T).astype(np.float64)
    S = np.asarray(opt.gcn_propagation(adjacency), np.float64)
    X = rng.normal(size=(m0, n))
    idx = np.sort(rng.choice(n, num_labelled, replace=False))
    Y = rng.normal(size=(k, num_labelled))
    return X, S, idx, Y


def test_hand_written_gradient_equals_jax_grad_for_two_layers_without_skip():
    with jax.enable_x64(True):
        X, S, idx, Y = _problem()
        params = opt.init_params(jax.random.PRNGKey(1), [5, 6, 4], 3, skip=False, init="gaussian", dtype=jnp.float64)
        B1, B2, W = (np.asarray(a) for a in (*params["B"], params["W"]))
        # f = W B2 B1 Z,  Z = (X S^2)_{*,I};  L = ||f - Y||^2;  R = 2 (f - Y)
        Z = (X @ S @ S)[:, idx]
        R = 2 * (W @ B2 @ B1 @ Z - Y)
        expected = {"W": R @ (B2 @ B1 @ Z).T, "B2": W.T @ R @ (B1 @ Z).T, "B1": (W @ B2).T @ R @ Z.T}
        grads = jax.grad(opt.loss)(params, X, S, idx, Y, skip=False)
        np.testing.assert_allclose(grads["W"], expected["W"], rtol=1e-10)
        np.testing.assert_allclose(grads["B"][1], expected["B2"], rtol=1e-10)
        np.testing.assert_allclose(grads["B"][0], expected["B1"], rtol=1e-10)


def test_hand_written_gradient_equals_jax_grad_for_multiscale_model():
    with jax.enable_x64(True):
        X, S, idx, Y = _problem(seed=2)
        params = opt.init_params(jax.random.PRNGKey(3), [5, 6, 4], 3, skip=True, init="gaussian", dtype=jnp.float64)
        B1, B2 = (np.asarray(b) for b in params["B"])
        W0, W1, W2 = (np.asarray(w) for w in params["W"])
        Z0, Z1, Z2 = X[:, idx], (X @ S)[:, idx], (X @ S @ S)[:, idx]
        # f = W0 Z0 + W1 B1 Z1 + W2 B2 B1 Z2
        R = 2 * (W0 @ Z0 + W1 @ B1 @ Z1 + W2 @ B2 @ B1 @ Z2 - Y)
        expected_B1 = W1.T @ R @ Z1.T + (W2 @ B2).T @ R @ Z2.T
        grads = jax.grad(opt.loss)(params, X, S, idx, Y, skip=True)
        np.testing.assert_allclose(grads["W"][0], R @ Z0.T, rtol=1e-10)
        np.testing.assert_allclose(grads["W"][1], R @ (B1 @ Z1).T, rtol=1e-10)
        np.testing.assert_allclose(grads["W"][2], R @ (B2 @ B1 @ Z2).T, rtol=1e-10)
        np.testing.assert_allclose(grads["B"][1], W2.T @ R @ (B1 @ Z2).T, rtol=1e-10)
        np.testing.assert_allclose(grads["B"][0], expected_B1, rtol=1e-10)


@pytest.mark.parametrize("skip", [False, True])
def test_aggregated_fast_path_equals_full_propagation(skip):
    with jax.enable_x64(True):
        X, S, idx, Y = _problem(seed=4)
        params = opt.init_params(jax.random.PRNGKey(0), [5, 6, 6, 6], 3, skip=skip, dtype=jnp.float64)
        Z = opt.aggregate_features(X, S, idx, 3)
        np.testing.assert_allclose(opt.forward_aggregated(params, Z, skip=skip),
                                   opt.forward(params, X, S, idx, skip=skip), rtol=1e-10)
        np.testing.assert_allclose(opt.forward(params, X, opt.sparse_propagation(sp.csr_matrix((S > 0) & ~np.eye(len(S), dtype=bool)), "gcn",
                                                                                   dtype=jnp.float64), idx, skip=skip),
                                   opt.forward(params, X, S, idx, skip=skip), rtol=1e-8)


def test_relu_forward_matches_hand_computation():
    with jax.enable_x64(True):
        X, S, idx, _ = _problem(seed=5)
        params = opt.init_params(jax.random.PRNGKey(0), [5, 4, 4], 3, skip=False, init="gaussian", dtype=jnp.float64)
        B1, B2, W = (np.asarray(a) for a in (*params["B"], params["W"]))
        relu = lambda a: np.maximum(a, 0)  # noqa: E731
        expected = W @ relu(B2 @ relu(B1 @ X @ S) @ S)[:, idx]
        np.testing.assert_allclose(opt.forward(params, X, S, idx, skip=False, activation="relu"), expected, rtol=1e-10)


@pytest.mark.parametrize("skip", [False, True])
def test_gd_decreases_loss_monotonically_towards_optimal_loss(skip):
    with jax.enable_x64(True):
        X, S, idx, Y = _problem(seed=6, m0=4, n=20, num_labelled=15)  # (H+1) x 4 features < 15 nodes: L* > 0
        lstar = opt.optimal_loss(X, S, idx, Y, 2, multiscale=skip)
        assert lstar > 0.1
        params = opt.init_params(jax.random.PRNGKey(0), [4, 6, 6], 3, skip=skip, dtype=jnp.float64)
        _, trace = opt.gd_train(params, X, S, idx, Y, skip=skip, learning_rate=5e-3, num_steps=4000)
        losses = np.asarray(trace.loss)
        assert np.all(np.diff(losses) <= 1e-12), "GD with a small step must not increase the loss"
        assert lstar <= losses.min() + 1e-9
        assert losses[-1] - lstar < 1e-3 * (losses[0] - lstar)  # converged to the global minimum
        # L* is the least-squares optimum: no linear map of the aggregated features beats it
        Z = np.asarray(opt.aggregate_features(X, S, idx, 2))
        F = Z.reshape(-1, Z.shape[-1]) if skip else Z[-1]
        rng = np.random.default_rng(0)
        best = np.linalg.lstsq(F.T, Y.T, rcond=None)[0].T
        for _ in range(5):
            assert np.sum(((best + 0.1 * rng.normal(size=best.shape)) @ F - Y) ** 2) > lstar
        # lambda_T stays positive and the measured rate beats the gradient-flow bound 4 eta lambda_T sigma^2
        lambda_t = np.nanmin(np.asarray(trace.lambda_min_per_depth if skip else trace.lambda_min))
        assert lambda_t > 0
        bound = opt.rate_bound(lambda_t, opt.sigma_min_aggregated(X, S, idx, 2, multiscale=skip), 5e-3)
        assert opt.fit_linear_rate(losses, lstar, (0, 1000)) > bound


def test_lambda_min_product_on_known_matrices():
    with jax.enable_x64(True):
        B1 = jnp.array([[2.0, 0.0], [0.0, 1.0], [0.0, 0.0]])  # [3, 2]
        B2 = jnp.array([[1.0, 0.0, 0.0], [0.0, 3.0, 0.0], [0.0, 0.0, 1.0]])  # [3, 3]
        params = {"B": [B1, B2], "W": jnp.ones((1, 3))}
        # Bbar = B2 B1 = [[2, 0], [0, 3], [0, 0]] -> Bbar^T Bbar = diag(4, 9)
        assert float(opt.lambda_min_product(params)) == pytest.approx(4.0)
        rng = np.random.default_rng(0)
        Bs = [rng.normal(size=(6, 4)), rng.normal(size=(5, 6)), rng.normal(size=(7, 5))]
        bbar = Bs[2] @ Bs[1] @ Bs[0]
        expected = np.linalg.eigvalsh(bbar.T @ bbar).min()
        assert float(opt.lambda_min_product({"B": [jnp.asarray(b) for b in Bs], "W": None})) == pytest.approx(expected, rel=1e-8)
        per_depth = np.asarray(opt.lambda_min_partial_products({"B": [jnp.asarray(b) for b in Bs], "W": []}))
        assert per_depth[0] == 1.0 and per_depth[1] == pytest.approx(np.linalg.eigvalsh(Bs[0].T @ Bs[0]).min())
        # a bottleneck narrower than m_0 makes Bbar^T Bbar singular
        narrow = {"B": [jnp.ones((1, 2))], "W": jnp.ones((1, 1))}
        assert float(opt.lambda_min_product(narrow)) == 0.0


def test_orthogonal_init_starts_at_lambda_one():
    params = opt.init_params(jax.random.PRNGKey(0), [8, 16, 16, 16], 3, skip=False, init="orthogonal")
    assert float(opt.lambda_min_product(params)) == pytest.approx(1.0, rel=1e-4)


def test_fit_linear_rate_recovers_known_rate():
    steps = np.arange(400)
    losses = 2.5 + 7.0 * np.exp(-0.013 * steps)
    assert opt.fit_linear_rate(losses, 2.5) == pytest.approx(0.013, rel=1e-6)
    # a two-phase curve: the window picks the phase
    two_phase = np.where(steps < 200, np.exp(-0.05 * steps), np.exp(-0.05 * 200 - 0.01 * (steps - 200)))
    assert opt.fit_linear_rate(two_phase, 0.0, (0, 200)) == pytest.approx(0.05, rel=1e-6)
    assert opt.fit_linear_rate(two_phase, 0.0, (200, None)) == pytest.approx(0.01, rel=1e-6)
    # points at or below L* (round-off) are ignored, not turned into -inf
    assert opt.fit_linear_rate(np.r_[losses[:50], [2.5, 2.4]], 2.5) == pytest.approx(0.013, rel=1e-6)
    assert np.isnan(opt.fit_linear_rate([1.0], 0.0))


def test_sbm_is_deterministic_and_citation_like():
    a = make_sbm_graph(num_nodes=200, num_classes=4, feature_dim=8, p_in=0.1, p_out=0.01, labelled_per_class=5, seed=3)
    b = make_sbm_graph(num_nodes=200, num_classes=4, feature_dim=8, p_in=0.1, p_out=0.01, labelled_per_class=5, seed=3)
    assert (a.adjacency != b.adjacency).nnz == 0 and np.array_equal(a.features, b.features)
    dense = a.adjacency.toarray()
    assert np.array_equal(dense, dense.T) and np.all(np.diag(dense) == 0)
    same = a.labels[:, None] == a.labels[None, :]
    assert dense[same].mean() > 5 * dense[~same].mean()  # homophilous
    assert np.bincount(a.labels[a.labelled_idx]).tolist() == [5, 5, 5, 5]
    bow = make_sbm_graph(num_nodes=60, num_classes=3, feature_dim=30, feature_kind="bow", labelled_per_class=2, seed=0)
    assert set(np.unique(bow.features)) <= {0.0, 1.0}


def test_skip_connections_reach_lower_loss_on_sbm():
    """The paper's main claim on a small SBM graph: with the same step size, init of B and number of
    steps, the multiscale (skip) linear GCN ends closer to its global minimum than the plain one."""
    graph = make_sbm_graph(num_nodes=160, num_classes=4, feature_dim=16, p_in=0.08, p_out=0.008,
                           noise=2.0, labelled_per_class=3, seed=0)
    X = graph.features.T / np.linalg.norm(graph.features[graph.labelled_idx], 2) * 3.0  # [m_0, n]
    S = opt.gcn_propagation(graph.adjacency.toarray())
    Y = np.eye(4)[graph.labels[graph.labelled_idx]].T  # [4, |I|]
    final = {}
    for skip in (False, True):
        params = opt.init_params(jax.random.PRNGKey(0), [16, 16, 16, 16], 4, skip=skip)
        _, trace = opt.gd_train(params, X, S, graph.labelled_idx, Y, skip=skip, learning_rate=1e-3, num_steps=1500)
        losses = np.asarray(trace.loss)
        lstar = opt.optimal_loss(X, S, graph.labelled_idx, Y, 3, multiscale=skip)
        assert np.all(np.diff(losses) <= 1e-4 * losses[1:])
        final[skip] = losses[-1] - lstar
    assert final[True] < 0.1 * final[False]
