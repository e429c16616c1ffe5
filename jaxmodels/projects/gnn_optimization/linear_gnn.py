r"""Gradient dynamics of linearised GNNs (Xu, Zhang, Jegelka & Kawaguchi, ICML 2021, arXiv 2105.04550).

"Optimization of Graph Neural Networks: Implicit Acceleration by Skip Connections and More Depth."
No official code exists. Matrices are laid out as in the paper: features x nodes.

Model (the paper's linearized GNN, its section 2). Unverified: the PDF could not be read here; the
definitions below follow the abstract and secondary summaries, so no equation numbers are cited.

    X^(0) = X                         X in R^{m_0 x n}   (features x nodes)
    X^(l) = B^(l) X^(l-1) S            B^(l) in R^{m_l x m_(l-1)},  S in R^{n x n}
    f     = W X^(H)_{*,I}              W in R^{m_y x m_H}, I the labelled nodes

and the multiscale ("skip connection", jumping-knowledge-like) variant

    f     = sum_{l=0..H} W^(l) X^(l)_{*,I}

which here includes l = 0, the raw features (our reading of "sums the layer outputs"; unverified),
with S = D~^-1/2 A~ D~^-1/2 (GCN, A~ = A + I) or S = A + (1 + eps) I (GIN). The ReLU versions use
X^(l) = relu(B^(l) X^(l-1) S) for every layer 1..H. The loss is

    L = || f - Y ||_F^2        (constant 1, no 1/2),   Y in R^{m_y x |I|}.

Rate. With this constant, gradient flow on the linear model satisfies

    L(t) - L* <= (L(0) - L*) exp(-4 lambda_T sigma_min^2(X (S^H)_{*,I}) t),
    lambda_T = min_{s <= t} lambda_min(Bbar^T Bbar),  Bbar = B^(H) ... B^(1),

the form of the paper's first theorem as summarised secondhand (its constant is unverified; the 4
is ours): the W-gradient alone gives dL/dt <= -||dL/dW||^2 <= -4 lambda_min(Bbar^T Bbar)
sigma_min^2(Z_H) (L - L*), with Z_l = (X S^l)_{*,I} and sigma_min its min(m_0, |I|)-th singular
value. For the multiscale model the same argument on the concatenated features F = [Z_0; ...; Z_H]
gives 4 min_l lambda^(l)_T sigma_min^2(F) (``rate_bound``), lambda^(l) that of Bbar^(l) =
B^(l)...B^(1); the paper's own multiscale statement (a sum of per-depth terms, secondhand) is not
used because we could not verify it. GD with step eta approximates the flow, so the per-step bound
is eta times the flow rate.

Parameters are plain dicts: ``{"B": [B^(1), ..., B^(H)], "W": W}`` without skip connections and
``{"B": [...], "W": [W^(0), ..., W^(H)]}`` with them.
"""
from __future__ import annotations

import functools
from typing import NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import scipy.sparse as sp
from jax.experimental import sparse as jsparse

ACTIVATIONS = {"linear": lambda x: x, "relu": jax.nn.relu}
AGGREGATIONS = ("gcn", "gin")


# --------------------------------------------------------------------------- propagation matrices


def gcn_propagation(adjacency) -> jax.Array:
    """S = D~^-1/2 A~ D~^-1/2 with A~ = A + I and D~ its degree matrix (Kipf & Welling 2017; the
    GCN aggregation of the paper's section 2). ``adjacency``: dense [n, n], symmetric, 0/1 or weighted."""
    a = jnp.asarray(adjacency)
    a_tilde = a + jnp.eye(a.shape[0], dtype=a.dtype)  # [n, n]
    inv_sqrt_degree = 1.0 / jnp.sqrt(a_tilde.sum(axis=1))  # [n]
    return inv_sqrt_degree[:, None] * a_tilde * inv_sqrt_degree[None, :]


def gin_propagation(adjacency, eps: float = 0.0) -> jax.Array:
    """S = A + (1 + eps) I: the sum aggregation of GIN (Xu et al. 2019) as used in the paper's section 2."""
    a = jnp.asarray(adjacency)
    return a + (1.0 + eps) * jnp.eye(a.shape[0], dtype=a.dtype)


def propagation_matrix(adjacency, aggregation: str, *, eps: float = 0.0) -> jax.Array:
    """Dense S for ``aggregation`` in {"gcn", "gin"}."""
    if aggregation == "gcn":
        return gcn_propagation(adjacency)
    if aggregation == "gin":
        return gin_propagation(adjacency, eps)
    raise ValueError(f"unknown aggregation {aggregation!r}; choose one of {AGGREGATIONS}")


def sparse_propagation(adjacency, aggregation: str, *, eps: float = 0.0, dtype=jnp.float32) -> jsparse.BCOO:
    """S as a BCOO matrix, built without an n x n dense array (``adjacency``: scipy sparse or dense).

    Same S as ``propagation_matrix``; ``X @ S`` then costs O(m |E|) instead of O(m n^2).
    """
    if aggregation not in AGGREGATIONS:
        raise ValueError(f"unknown aggregation {aggregation!r}; choose one of {AGGREGATIONS}")
    a = sp.csr_matrix(adjacency, dtype=np.float64)
    identity = sp.identity(a.shape[0], dtype=np.float64, format="csr")
    if aggregation == "gcn":
        a_tilde = a + identity
        inv_sqrt_degree = sp.diags(1.0 / np.sqrt(np.asarray(a_tilde.sum(axis=1)).ravel()))
        s = (inv_sqrt_degree @ a_tilde @ inv_sqrt_degree).tocoo()
    else:
        s = (a + (1.0 + eps) * identity).tocoo()
    indices = np.stack([s.row, s.col], axis=1).astype(np.int32)  # [nnz, 2]
    return jsparse.BCOO((jnp.asarray(s.data, dtype), jnp.asarray(indices)), shape=s.shape)


# --------------------------------------------------------------------------------- parameters


def init_params(rng: jax.Array, dims: Sequence[int], num_outputs: int, *, skip: bool,
                init: str = "orthogonal", scale: float = 1.0, dtype=jnp.float32) -> dict:
    """Random init of B^(1..H) and W (or W^(0..H) with ``skip``).

    ``dims`` = (m_0, m_1, ..., m_H), H = len(dims) - 1 >= 1. ``init``:
      orthogonal  B^(l) = scale x a random matrix with orthonormal columns (rows when m_l < m_(l-1));
                  with m_l >= m_0 for all l this starts at lambda_min(Bbar^T Bbar) = scale^(2H);
      gaussian    B^(l)_ij ~ N(0, scale^2 / m_(l-1)).
    W_ij ~ N(0, 1 / m_l) in both cases; with ``skip`` there is one W^(l) [num_outputs, m_l] per depth
    l = 0..H. The paper trains "from a random initialisation"; its exact distribution is unverified.
    """
    dims = [int(d) for d in dims]
    if len(dims) < 2:
        raise ValueError(f"dims={dims}: need (m_0, ..., m_H) with H >= 1")
    if init not in ("orthogonal", "gaussian"):
        raise ValueError(f"unknown init {init!r}; choose 'orthogonal' or 'gaussian'")
    depth = len(dims) - 1
    keys = jax.random.split(rng, 2 * depth + 2)

    def gaussian(key, rows, cols, std):
        return (std / np.sqrt(cols)) * jax.random.normal(key, (rows, cols), dtype)

    def layer(key, rows, cols):
        if init == "gaussian":
            return gaussian(key, rows, cols, scale)
        return scale * jax.nn.initializers.orthogonal()(key, (rows, cols), dtype)

    bs = [layer(keys[l], dims[l + 1], dims[l]) for l in range(depth)]  # B^(l+1): [m_(l+1), m_l]
    if skip:
        ws = [gaussian(keys[depth + l], num_outputs, dims[l], 1.0) for l in range(depth + 1)]  # W^(l): [m_y, m_l]
        return {"B": bs, "W": ws}
    return {"B": bs, "W": gaussian(keys[-1], num_outputs, dims[-1], 1.0)}


def _is_skip(params: dict) -> bool:
    return isinstance(params["W"], (list, tuple))


# ------------------------------------------------------------------------------------ forward


def forward(params: dict, X, S, labelled_idx, *, skip: bool, activation: str = "linear") -> jax.Array:
    """f = W X^(H)_{*,I}, or sum_{l=0..H} W^(l) X^(l)_{*,I} with ``skip`` (paper section 2).

    X: [m_0, n] features x nodes; S: [n, n] dense or BCOO; labelled_idx: [|I|]. Returns [m_y, |I|].
    Every layer propagates all n nodes, so this serves linear and ReLU models alike.
    """
    act = ACTIVATIONS[activation]
    h = jnp.asarray(X)  # [m_0, n]
    outputs = params["W"][0] @ h[:, labelled_idx] if skip else 0.0  # [m_y, |I|]
    for l, b in enumerate(params["B"], start=1):
        h = act(b @ (h @ S))  # [m_l, n]
        if skip:
            outputs = outputs + params["W"][l] @ h[:, labelled_idx]
    return outputs if skip else params["W"] @ h[:, labelled_idx]


def aggregate_features(X, S, labelled_idx, depth: int) -> jax.Array:
    """Z_l = (X S^l)_{*,I} for l = 0..H, stacked: [H+1, m_0, |I|].

    For linear models X^(l)_{*,I} = B^(l)...B^(1) Z_l, so training needs the graph only once.
    """
    h = jnp.asarray(X)  # [m_0, n]
    zs = [h[:, labelled_idx]]
    for _ in range(depth):
        h = h @ S  # [m_0, n]
        zs.append(h[:, labelled_idx])
    return jnp.stack(zs)  # [H+1, m_0, |I|]


def forward_aggregated(params: dict, Z, *, skip: bool) -> jax.Array:
    """The linear model from precomputed Z (``aggregate_features``): W Bbar Z_H or sum_l W^(l) Bbar^(l) Z_l."""
    h = Z[0]  # [m_0, |I|], X^(0)_{*,I}
    outputs = params["W"][0] @ h if skip else 0.0
    prefix = None  # Bbar^(l) = B^(l) ... B^(1): [m_l, m_0]
    for l, b in enumerate(params["B"], start=1):
        prefix = b if prefix is None else b @ prefix
        if skip:
            outputs = outputs + params["W"][l] @ (prefix @ Z[l])  # [m_y, |I|]
    return outputs if skip else params["W"] @ (prefix @ Z[-1])


def loss(params: dict, X, S, labelled_idx, Y, *, skip: bool, activation: str = "linear") -> jax.Array:
    """L = ||f - Y||_F^2 (constant 1; the squared loss of the paper's section 2). Y: [m_y, |I|]."""
    residual = forward(params, X, S, labelled_idx, skip=skip, activation=activation) - Y
    return jnp.sum(residual ** 2)


def loss_aggregated(params: dict, Z, Y, *, skip: bool) -> jax.Array:
    """``loss`` for linear models from precomputed Z; equal to it up to rounding."""
    return jnp.sum((forward_aggregated(params, Z, skip=skip) - Y) ** 2)


# -------------------------------------------------------------------------------- diagnostics


def _sigma_min_squared(matrix: jax.Array) -> jax.Array:
    """min(rows, cols)-th singular value, squared (an SVD keeps small values accurate; B^T B would not)."""
    return jnp.min(jnp.linalg.svd(matrix, compute_uv=False)) ** 2


def partial_products(params: dict) -> list[jax.Array]:
    """[Bbar^(1), ..., Bbar^(H)] with Bbar^(l) = B^(l) ... B^(1): [m_l, m_0]."""
    prefix, products = None, []
    for b in params["B"]:
        prefix = b if prefix is None else b @ prefix
        products.append(prefix)
    return products


def lambda_min_product(params: dict) -> jax.Array:
    """lambda_min(Bbar^T Bbar), Bbar = B^(H) ... B^(1) (the paper's lambda_T before the min over t).

    Bbar^T Bbar is [m_0, m_0]; it is singular (0) whenever m_H < m_0.
    """
    bbar = partial_products(params)[-1]  # [m_H, m_0]
    if bbar.shape[0] < bbar.shape[1]:
        return jnp.zeros((), bbar.dtype)
    return _sigma_min_squared(bbar)


def lambda_min_partial_products(params: dict) -> jax.Array:
    """[H+1]: lambda_min(Bbar^(l)T Bbar^(l)) for l = 0..H, with Bbar^(0) = I (so entry 0 is 1).

    These are the per-depth factors of the multiscale model's rate.
    """
    bbars = partial_products(params)
    one = jnp.ones((), bbars[0].dtype)
    values = [one] + [jnp.zeros((), b.dtype) if b.shape[0] < b.shape[1] else _sigma_min_squared(b) for b in bbars]
    return jnp.stack(values)


def sigma_min_aggregated(X, S, labelled_idx, depth: int, *, multiscale: bool = False) -> float:
    """sigma_min^2((X S^H)_{*,I}); with ``multiscale`` that of F = [Z_0; Z_1; ...; Z_H] (concatenated
    along features, [(H+1) m_0, |I|]). sigma_min is the min(rows, cols)-th singular value.

    Returns the square, the quantity in the rate. Computed on the host in float64.
    """
    z = np.asarray(aggregate_features(X, S, labelled_idx, depth), np.float64)  # [H+1, m_0, |I|]
    features = z.reshape(-1, z.shape[-1]) if multiscale else z[-1]
    return float(np.min(np.linalg.svd(features, compute_uv=False)) ** 2)


def optimal_loss(X, S, labelled_idx, Y, depth: int, *, multiscale: bool = False) -> float:
    """L* = min_M ||M F - Y||_F^2 with F = Z_H = (X S^H)_{*,I}, or the concatenation over l = 0..H.

    The global minimum of the linear (multiscale) GNN's loss when every width m_l >= min(m_y, m_0):
    W Bbar (and each W^(l) Bbar^(l)) can then be any m_y x m_0 matrix. Least squares in float64.
    """
    z = np.asarray(aggregate_features(X, S, labelled_idx, depth), np.float64)
    features = z.reshape(-1, z.shape[-1]) if multiscale else z[-1]  # [rows, |I|]
    y = np.asarray(Y, np.float64)  # [m_y, |I|]
    coef, *_ = np.linalg.lstsq(features.T, y.T, rcond=None)  # [rows, m_y]
    residual = y - coef.T @ features
    return float(np.sum(residual ** 2))


def rate_bound(lambda_t, sigma_min2: float, learning_rate: float = 1.0) -> float:
    """4 eta lambda_T sigma_min^2: the per-step rate a linear model must beat (module docstring).

    ``lambda_t``: lambda_T (no skip) or the [H+1] per-depth lambda^(l)_T (skip; their minimum is used
    with the concatenated-features sigma_min^2).
    """
    return float(4.0 * learning_rate * np.min(np.asarray(lambda_t)) * sigma_min2)


def fit_linear_rate(losses, lstar: float, window: tuple[int | None, int | None] | None = None,
                    *, min_gap: float = 0.0, relative_floor: float = 1e-11) -> float:
    """Linear-rate fit: -slope of log(L(t) - L*) against t by least squares over ``window``.

    A positive value r means L(t) - L* ~ C exp(-r t). Steps where the gap is <= ``min_gap`` or below
    ``relative_floor`` times the largest gap in the window (float round-off) are left out. Returns nan
    with fewer than two usable points.
    """
    losses = np.asarray(losses, np.float64)
    start, stop = (None, None) if window is None else window
    steps = np.arange(losses.shape[0])[start:stop]
    gaps = losses[start:stop] - lstar
    keep = np.isfinite(gaps) & (gaps > min_gap)
    if keep.any():
        keep &= gaps > relative_floor * np.max(gaps[keep])
    if keep.sum() < 2:
        return float("nan")
    slope = np.polyfit(steps[keep].astype(np.float64), np.log(gaps[keep]), 1)[0]
    return float(-slope)


# ------------------------------------------------------------------------------------ training


class Trace(NamedTuple):
    """Per-step record of ``gd_train``; entry t is measured at the parameters after t GD steps.

    lambda_min entries at steps that are not multiples of ``diagnostics_every`` (and not the last) are
    nan; use ``np.nanmin`` for lambda_T.
    """
    loss: jax.Array  # [T+1]
    lambda_min: jax.Array  # [T+1]: lambda_min(Bbar^T Bbar) of the full product B^(H)...B^(1)
    lambda_min_per_depth: jax.Array | None  # [T+1, H+1] for skip models: lambda^(l), l = 0..H; else None


def _diagnostics(params, skip: bool):
    if skip:
        per_depth = lambda_min_partial_products(params)  # [H+1]
        return per_depth[-1], per_depth
    return lambda_min_product(params), None


def _scan_gd(objective, params, learning_rate, *, skip, num_steps, diagnostics_every):
    """GD with a constant step inside one ``lax.scan``; records the loss every step and the
    lambda_min diagnostics every ``diagnostics_every`` steps (nan elsewhere)."""
    value_and_grad = jax.value_and_grad(objective)
    diagnose = functools.partial(_diagnostics, skip=skip)
    shapes = jax.eval_shape(diagnose, params)

    def skipped(_):
        return jax.tree.map(lambda s: jnp.full(s.shape, jnp.nan, s.dtype), shapes)

    def step(p, t):
        value, grads = value_and_grad(p)
        diagnostics = jax.lax.cond(t % diagnostics_every == 0, diagnose, skipped, p)
        return jax.tree.map(lambda a, g: a - learning_rate * g, p, grads), (value, *diagnostics)

    params, records = jax.lax.scan(step, params, jnp.arange(num_steps))
    final = (objective(params), *diagnose(params))
    return params, jax.tree.map(lambda r, f: jnp.concatenate([r, f[None]]), records, final)


@functools.partial(jax.jit, static_argnames=("skip", "num_steps", "diagnostics_every"))
def _gd_linear(params, Z, Y, learning_rate, *, skip, num_steps, diagnostics_every):
    objective = lambda p: loss_aggregated(p, Z, Y, skip=skip)  # noqa: E731
    return _scan_gd(objective, params, learning_rate, skip=skip, num_steps=num_steps,
                    diagnostics_every=diagnostics_every)


@functools.partial(jax.jit, static_argnames=("skip", "activation", "num_steps", "diagnostics_every"))
def _gd_full(params, X, S, labelled_idx, Y, learning_rate, *, skip, activation, num_steps, diagnostics_every):
    objective = lambda p: loss(p, X, S, labelled_idx, Y, skip=skip, activation=activation)  # noqa: E731
    return _scan_gd(objective, params, learning_rate, skip=skip, num_steps=num_steps,
                    diagnostics_every=diagnostics_every)


def gd_train(params: dict, X, S, labelled_idx, Y, *, skip: bool, activation: str = "linear",
             learning_rate: float, num_steps: int, diagnostics_every: int = 1) -> tuple[dict, Trace]:
    """Full-batch gradient descent with a constant step (the discrete form of the paper's gradient flow).

    One jitted ``lax.scan`` over ``num_steps``; returns the final parameters and a ``Trace`` of the loss
    (every step) and the lambda_min diagnostics (every ``diagnostics_every`` steps and at the end) at
    steps 0..T. Linear models train on the precomputed Z_l (``aggregate_features``: the same function
    and gradients, far cheaper); ReLU models propagate every node through S each step (pass S as
    BCOO, ``sparse_propagation``, for large graphs).
    """
    if activation not in ACTIVATIONS:
        raise ValueError(f"unknown activation {activation!r}; choose one of {sorted(ACTIVATIONS)}")
    if skip != _is_skip(params):
        raise ValueError(f"skip={skip} but params were initialised with skip={_is_skip(params)}")
    if num_steps < 1 or diagnostics_every < 1:
        raise ValueError(f"num_steps={num_steps} and diagnostics_every={diagnostics_every} must be >= 1")
    labelled_idx = jnp.asarray(labelled_idx)
    lr = jnp.asarray(learning_rate, dtype=params["B"][0].dtype)
    options = dict(skip=skip, num_steps=int(num_steps), diagnostics_every=int(diagnostics_every))
    if activation == "linear":
        Z = aggregate_features(X, S, labelled_idx, len(params["B"]))  # [H+1, m_0, |I|]
        params, records = _gd_linear(params, Z, Y, lr, **options)
    else:
        params, records = _gd_full(params, X, S, labelled_idx, Y, lr, activation=activation, **options)
    return params, Trace(*records)
