"""The VQA v2 model with the counting component (Zhang et al., ICLR 2018, sec. 5.2 and appendix;
official ``Cyanogenoid/vqa-counting/vqa-v2/model.py``, itself after Kazemi & Elqursh 2017).

* Question: embedding (300) -> dropout -> tanh -> GRU (1024); the GRU state after the last real token.
* Image: the bottom-up object features (up to 100 proposals x 2048), L2-normalised per proposal.
* Attention: fusion(W_v v, W_q q) with fusion(x, y) = -(x - y)^2 + relu(x + y) (mid 512), then a
  linear map to 2 glimpses; softmax over the proposals per glimpse; the attended features of both
  glimpses are concatenated (2 x 2048).
* Counter: the first glimpse's attention logits and the proposal boxes -> 11 count features.
* Classifier: fusion(W_1 v_att, W_2 q) (1024) + BN(ReLU(W_c count)) -> BN -> dropout -> linear to the
  answers (3000). Dropout 0.5 before every linear layer of the attention and classifier.
* Initialisation: Xavier-uniform weights and zero biases for every linear layer (and for each of
  the GRU's three gate blocks), Xavier-uniform embeddings, as the official code.

Loss (:func:`soft_cross_entropy`): sum over answers of -log p(answer) x (humans who gave it) / 10.
``count=False`` gives the paper's baseline (the classifier without the count features).
"""
from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxmodels.vqa.counting import Counter

xavier = nn.initializers.xavier_uniform()


def fusion(x: jax.Array, y: jax.Array) -> jax.Array:
    """-(x - y)^2 + relu(x + y) (the official ``Fusion``)."""
    return -(x - y) ** 2 + jax.nn.relu(x + y)


class GRUCell(nn.Module):
    """PyTorch's ``nn.GRU`` cell: r, z from input + hidden (both with biases); n = tanh(W_in x + b_in + r (W_hn h + b_hn)).

    The input and hidden weights are one (in, 3h) and one (h, 3h) kernel each, gates ordered r, z, n
    as PyTorch's ``weight_ih_l0``/``weight_hh_l0``; every gate block is Xavier-initialised separately.
    """

    features: int

    @nn.compact
    def __call__(self, carry: jax.Array, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        h = carry
        per_gate = lambda key, shape, dtype=jnp.float32: jnp.concatenate(  # noqa: E731
            [xavier(k, (shape[0], self.features), dtype) for k in jax.random.split(key, 3)], axis=1)
        w_ih = self.param("kernel_ih", per_gate, (x.shape[-1], 3 * self.features))
        w_hh = self.param("kernel_hh", per_gate, (self.features, 3 * self.features))
        b_ih = self.param("bias_ih", nn.initializers.zeros, (3 * self.features,))
        b_hh = self.param("bias_hh", nn.initializers.zeros, (3 * self.features,))
        gi = x @ w_ih + b_ih
        gh = h @ w_hh + b_hh
        i_r, i_z, i_n = jnp.split(gi, 3, axis=-1)
        h_r, h_z, h_n = jnp.split(gh, 3, axis=-1)
        r = jax.nn.sigmoid(i_r + h_r)
        z = jax.nn.sigmoid(i_z + h_z)
        n = jnp.tanh(i_n + r * h_n)
        h = (1.0 - z) * n + z * h
        return h, h


class QuestionEncoder(nn.Module):
    """Embedding -> dropout -> tanh -> GRU; the state after each question's last token. [batch, features]"""

    vocab_size: int
    embedding_features: int = 300
    features: int = 1024
    dropout_rate: float = 0.5

    @nn.compact
    def __call__(self, question: jax.Array, length: jax.Array, *, train: bool) -> jax.Array:
        embedded = nn.Embed(self.vocab_size, self.embedding_features, embedding_init=xavier, name="embedding")(question)
        x = jnp.tanh(nn.Dropout(self.dropout_rate)(embedded, deterministic=not train))
        scan = nn.scan(GRUCell, variable_broadcast="params", split_rngs={"params": False}, in_axes=1, out_axes=1)
        h0 = jnp.zeros((question.shape[0], self.features), x.dtype)
        _, states = scan(self.features, name="gru")(h0, x)  # [batch, time, features]
        last = jnp.clip(length - 1, 0, question.shape[1] - 1)
        # a packed sequence's final state is the state at its last real token
        return jnp.take_along_axis(states, last[:, None, None], axis=1)[:, 0]


class Attention(nn.Module):
    mid_features: int = 512
    glimpses: int = 2
    dropout_rate: float = 0.5

    @nn.compact
    def __call__(self, v: jax.Array, q: jax.Array, *, train: bool) -> jax.Array:
        drop = lambda x: nn.Dropout(self.dropout_rate)(x, deterministic=not train)  # noqa: E731
        v = nn.Dense(self.mid_features, use_bias=False, kernel_init=xavier, name="v_proj")(drop(v))
        q = nn.Dense(self.mid_features, kernel_init=xavier, name="q_proj")(drop(q))
        x = fusion(v, q[:, None, :])
        return nn.Dense(self.glimpses, kernel_init=xavier, name="glimpse_logits")(drop(x))  # [batch, proposals, glimpses]


def apply_attention(v: jax.Array, logits: jax.Array) -> jax.Array:
    """Softmax over proposals per glimpse; attended features of all glimpses, glimpse-major. [batch, g * c]"""
    weights = jax.nn.softmax(logits, axis=1)  # [b, n, g]
    attended = jnp.einsum("bng,bnc->bgc", weights, v)
    return attended.reshape(v.shape[0], -1)


class VQACounting(nn.Module):
    """The paper's VQA v2 model. Inputs: features [b, n, 2048], boxes [b, n, 4], question ids [b, L] and lengths [b]."""

    vocab_size: int
    num_answers: int = 3000
    embedding_features: int = 300
    question_features: int = 1024
    attention_features: int = 512
    mid_features: int = 1024
    glimpses: int = 2
    objects: int = 10
    dropout_rate: float = 0.5
    count: bool = True

    @nn.compact
    def __call__(self, features, boxes, question, question_length, *, train: bool = False,
                 return_aux: bool = False) -> Any:
        drop = lambda x: nn.Dropout(self.dropout_rate)(x, deterministic=not train)  # noqa: E731
        q = QuestionEncoder(self.vocab_size, self.embedding_features, self.question_features, self.dropout_rate,
                            name="question")(question, question_length, train=train)
        v = features.astype(jnp.float32)
        v = v / (jnp.linalg.norm(v, axis=-1, keepdims=True) + 1e-12)
        logits = Attention(self.attention_features, self.glimpses, self.dropout_rate, name="attention")(v, q, train=train)
        v_att = apply_attention(v, logits)

        x = fusion(nn.Dense(self.mid_features, kernel_init=xavier, name="v_fuse")(drop(v_att)),
                   nn.Dense(self.mid_features, kernel_init=xavier, name="q_fuse")(drop(q)))
        count = None
        if self.count:
            count = Counter(self.objects, name="counter")(boxes, logits[..., 0])
            c = jax.nn.relu(nn.Dense(self.mid_features, kernel_init=xavier, name="count_proj")(count))
            x = x + nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5, name="count_bn")(c)
        x = nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5, name="bn")(x)
        answer_logits = nn.Dense(self.num_answers, kernel_init=xavier, name="answer")(drop(x))
        if return_aux:
            return answer_logits, {"attention_logits": logits, "count": count}
        return answer_logits


def soft_cross_entropy(logits: jax.Array, answer_counts: jax.Array) -> jax.Array:
    """Per-example sum_a -log softmax(logits)_a x count_a / 10 (the official loss). [batch]"""
    log_probs = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
    return -jnp.sum(log_probs * answer_counts / 10.0, axis=-1)


def vqa_from_config(model_cfg) -> VQACounting:
    return VQACounting(
        vocab_size=int(model_cfg.vocab_size), num_answers=int(model_cfg.num_answers),
        embedding_features=int(model_cfg.get("embedding_features", 300)),
        question_features=int(model_cfg.get("question_features", 1024)),
        attention_features=int(model_cfg.get("attention_features", 512)),
        mid_features=int(model_cfg.get("mid_features", 1024)), glimpses=int(model_cfg.get("glimpses", 2)),
        objects=int(model_cfg.get("objects", 10)), dropout_rate=float(model_cfg.get("dropout_rate", 0.5)),
        count=bool(model_cfg.get("count", True)))
