r"""A citation-like stochastic block model (SBM) graph with class-conditional node features.

A stand-in for Cora/Citeseer where the real files are unavailable (the optimisation study of Xu et
al., ICML 2021, runs on those): k classes of nodes, an edge between two nodes of the same class with
probability ``p_in`` and of different classes with ``p_out`` (Holland et al. 1983), and features drawn
from the node's class, either

  gaussian  x_i = mu_{y_i} + noise * N(0, I_d), class means mu_c ~ N(0, I_d / d) scaled to norm
            ``signal``;
  bow       bag-of-words-like 0/1 word presence: each class has a topic distribution over d words
            (Dirichlet), a node draws Poisson(doc_length) words from a mix of its class topic
            (weight ``signal``, clipped to [0, 1]) and a uniform background.

Deterministic per seed (numpy ``default_rng``). The labelled set holds ``labelled_per_class`` nodes of
every class, as in the Planetoid split (20 per class).
"""
from __future__ import annotations

import dataclasses

import numpy as np
import scipy.sparse as sp

FEATURE_KINDS = ("gaussian", "bow")


@dataclasses.dataclass(frozen=True)
class SbmGraph:
    adjacency: sp.csr_matrix  # [n, n] float32 0/1, symmetric, no self loops
    features: np.ndarray  # [n, d] float32
    labels: np.ndarray  # [n] int64 in [0, k)
    labelled_idx: np.ndarray  # [k * labelled_per_class] int64, sorted

    @property
    def num_nodes(self) -> int:
        return int(self.labels.shape[0])

    @property
    def num_classes(self) -> int:
        return int(self.labels.max()) + 1


def sbm_adjacency(labels: np.ndarray, p_in: float, p_out: float, rng: np.random.Generator) -> sp.csr_matrix:
    """Symmetric 0/1 adjacency without self loops: P(i ~ j) = p_in if labels agree else p_out."""
    n = labels.shape[0]
    same = labels[:, None] == labels[None, :]  # [n, n]
    probs = np.where(same, p_in, p_out)
    upper = np.triu(rng.random((n, n)) < probs, k=1)  # [n, n], strictly upper triangle
    return sp.csr_matrix((upper | upper.T).astype(np.float32))


def class_features(labels: np.ndarray, num_classes: int, dim: int, rng: np.random.Generator, *,
                   kind: str = "gaussian", signal: float = 1.0, noise: float = 1.0,
                   doc_length: float = 20.0) -> np.ndarray:
    """Class-conditional features [n, d] (module docstring)."""
    n = labels.shape[0]
    if kind == "gaussian":
        means = rng.normal(size=(num_classes, dim))  # [k, d]
        means *= signal / np.linalg.norm(means, axis=1, keepdims=True)
        return (means[labels] + noise * rng.normal(size=(n, dim)) / np.sqrt(dim)).astype(np.float32)
    if kind == "bow":
        topics = rng.dirichlet(np.full(dim, 0.1), size=num_classes)  # [k, d]
        weight = float(np.clip(signal, 0.0, 1.0))
        word_probs = weight * topics[labels] + (1.0 - weight) / dim  # [n, d]
        counts = rng.poisson(doc_length, size=n)
        features = np.zeros((n, dim), np.float32)
        for i in range(n):
            words = rng.choice(dim, size=counts[i], p=word_probs[i])
            features[i, words] = 1.0
        return features
    raise ValueError(f"unknown feature kind {kind!r}; choose one of {FEATURE_KINDS}")


def make_sbm_graph(*, num_nodes: int = 1000, num_classes: int = 4, feature_dim: int = 32,
                   p_in: float = 0.02, p_out: float = 0.002, feature_kind: str = "gaussian",
                   signal: float = 1.0, noise: float = 1.0, doc_length: float = 20.0,
                   labelled_per_class: int = 20, seed: int = 0) -> SbmGraph:
    """An SBM graph with balanced classes (node i starts in class i mod k, then nodes are shuffled)."""
    if num_nodes < num_classes * labelled_per_class:
        raise ValueError(f"num_nodes={num_nodes} < num_classes * labelled_per_class = "
                         f"{num_classes * labelled_per_class}")
    if not (0.0 <= p_out <= 1.0 and 0.0 <= p_in <= 1.0):
        raise ValueError(f"edge probabilities must lie in [0, 1]; got p_in={p_in}, p_out={p_out}")
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.arange(num_nodes) % num_classes).astype(np.int64)  # [n]
    adjacency = sbm_adjacency(labels, p_in, p_out, rng)
    features = class_features(labels, num_classes, feature_dim, rng, kind=feature_kind, signal=signal,
                              noise=noise, doc_length=doc_length)
    labelled = [rng.choice(np.flatnonzero(labels == c), size=labelled_per_class, replace=False)
                for c in range(num_classes)]
    return SbmGraph(adjacency=adjacency, features=features, labels=labels,
                    labelled_idx=np.sort(np.concatenate(labelled)).astype(np.int64))
