"""GPT-2 decoder: parameter counts, init, causality, left padding, the KV cache, configs and sharding."""
import functools
import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from jaxmodels.layers import MultiHeadAttention, causal_mask, padding_mask
from jaxmodels.text.generation import init_cache
from jaxmodels.text.gpt import GPT, abstract_params, count_params, gpt2_variant, gpt_from_config

TINY = dict(vocab_size=61, n_positions=32, width=32, depth=2, num_heads=4)


@functools.partial(jax.jit, static_argnums=0)
def init(model, rng):
    return model.init(rng, jnp.zeros((1, 1), jnp.int32))["params"]


@functools.partial(jax.jit, static_argnums=0, static_argnames=("deterministic",))
def forward(model, params, ids, attention_mask=None, positions=None, deterministic=True, rng=None):
    """Jitted apply (eager flax compiles every op separately: slow on CPU)."""
    rngs = None if rng is None else {"dropout": rng}
    return model.apply({"params": params}, ids, attention_mask=attention_mask, positions=positions,
                       deterministic=deterministic, rngs=rngs)


@functools.partial(jax.jit, static_argnums=0)
def decode_step(model, params, cache, ids, attention_mask):
    logits, variables = model.apply({"params": params, "cache": cache}, ids, attention_mask=attention_mask,
                                    decode=True, mutable=["cache"])
    return logits, variables["cache"]


@pytest.fixture(scope="module")
def tiny():
    model = GPT(**TINY)
    boxed = init(model, jax.random.key(0))
    return model, boxed, nn.unbox(boxed)


def tokens(shape, seed=1, vocab=TINY["vocab_size"]):
    return jax.random.randint(jax.random.key(seed), shape, 0, vocab)


@pytest.mark.parametrize("variant, expected", [
    ("small", 124_439_808), ("medium", 354_823_168), ("large", 774_030_080), ("xl", 1_557_611_200)])
def test_gpt2_parameter_counts_without_allocating(variant, expected):
    assert count_params(abstract_params(GPT(**gpt2_variant(variant)))) == expected


def test_params_are_logically_partitioned_and_named_like_gpt2(tiny):
    _, boxed, params = tiny
    assert boxed["wte"]["embedding"].names == ("vocab", "embed")
    assert boxed["wpe"]["embedding"].names == ("seq", "embed")
    block = boxed["h_1"]
    assert block["attn"]["query"]["kernel"].names == ("embed", "heads", "kv")
    assert block["attn"]["out"]["kernel"].names == ("heads", "kv", "embed")
    assert block["mlp"]["c_fc"]["kernel"].names == ("embed", "mlp")
    assert block["mlp"]["c_proj"]["kernel"].names == ("mlp", "embed")
    assert block["ln_1"]["scale"].names == ("embed",)
    assert set(params) == {"wte", "wpe", "h_0", "h_1", "ln_f"}
    assert params["wpe"]["embedding"].shape == (32, 32)
    assert params["h_0"]["attn"]["key"]["kernel"].shape == (32, 4, 8)


def test_init_follows_gpt2_residual_scaling():
    model = GPT(vocab_size=64, n_positions=16, width=256, depth=2, num_heads=4)
    params = nn.unbox(init(model, jax.random.key(0)))
    std = lambda a: float(np.std(np.asarray(a)))  # noqa: E731
    scaled = 0.02 / math.sqrt(2 * 2)
    block = params["h_1"]
    assert std(params["wte"]["embedding"]) == pytest.approx(0.02, rel=0.1)
    assert std(block["attn"]["query"]["kernel"]) == pytest.approx(0.02, rel=0.1)
    assert std(block["mlp"]["c_fc"]["kernel"]) == pytest.approx(0.02, rel=0.1)
    assert std(block["attn"]["out"]["kernel"]) == pytest.approx(scaled, rel=0.1)
    assert std(block["mlp"]["c_proj"]["kernel"]) == pytest.approx(scaled, rel=0.1)
    assert not np.any(block["attn"]["value"]["bias"]) and np.all(block["ln_2"]["scale"] == 1)


def test_lm_head_is_tied_to_the_token_embedding(tiny):
    model, _, params = tiny
    ids = tokens((2, 5))
    logits = forward(model, params, ids)
    assert logits.shape == (2, 5, TINY["vocab_size"]) and logits.dtype == jnp.float32
    _, state = jax.jit(lambda p, x: model.apply({"params": p}, x, capture_intermediates=True,
                                                mutable=["intermediates"]))(params, ids)
    hidden = state["intermediates"]["ln_f"]["__call__"][0]  # LN_f(h_L) [batch, length, width]
    np.testing.assert_allclose(logits, hidden @ params["wte"]["embedding"].T, atol=1e-5)


def test_causality_future_tokens_do_not_change_earlier_logits(tiny):
    model, _, params = tiny
    ids = tokens((1, 8))
    changed = ids.at[:, 5:].set((ids[:, 5:] + 7) % TINY["vocab_size"])
    a, b = forward(model, params, ids), forward(model, params, changed)
    np.testing.assert_allclose(a[:, :5], b[:, :5], atol=1e-6)
    assert not np.allclose(a[:, 5:], b[:, 5:])


def test_left_padding_with_default_positions_matches_the_unpadded_sequence(tiny):
    model, _, params = tiny
    ids = tokens((1, 6))
    padded = jnp.concatenate([jnp.zeros((1, 3), jnp.int32), ids], axis=1)
    mask = jnp.array([[0, 0, 0, 1, 1, 1, 1, 1, 1]])
    expected = forward(model, params, ids)
    np.testing.assert_allclose(forward(model, params, padded, mask)[:, 3:], expected, atol=1e-5)
    explicit = jnp.array([[0, 0, 0, 0, 1, 2, 3, 4, 5]])
    np.testing.assert_allclose(forward(model, params, padded, mask, explicit)[:, 3:], expected, atol=1e-5)
    # Without the mask the pads are attended to and shift the positions: different logits.
    assert not np.allclose(forward(model, params, padded)[:, 3:], expected, atol=1e-3)


def test_kv_cache_prefill_then_tokens_equals_full_forward(tiny):
    model, _, params = tiny
    ids = tokens((2, 11))
    mask = jnp.array([[1] * 11, [0, 0, 0] + [1] * 8])
    full = forward(model, params, ids, mask)
    cache = init_cache(model, params, batch=2, max_length=16)
    assert cache["h_0"]["attn"]["cached_key"].shape == (2, 16, 4, 8)
    assert cache["valid"].shape == (2, 16) and cache["h_1"]["attn"]["cache_index"].shape == ()
    pieces, chunks = [], [(0, 6), (6, 7), (7, 9), (9, 10), (10, 11)]  # a prefill, single tokens and a pair
    for start, stop in chunks:
        logits, cache = decode_step(model, params, cache, ids[:, start:stop], mask[:, start:stop])
        pieces.append(logits)
    incremental = jnp.concatenate(pieces, axis=1)
    real = np.asarray(mask, bool)
    np.testing.assert_allclose(np.asarray(incremental)[real], np.asarray(full)[real], atol=1e-5)
    assert int(cache["index"]) == 11 and int(cache["h_0"]["attn"]["cache_index"]) == 11
    np.testing.assert_array_equal(cache["next_position"], [11, 8])


def test_attention_cache_matches_causal_attention_and_sizes_on_init():
    x = jax.random.normal(jax.random.key(0), (2, 7, 16))
    module = MultiHeadAttention(num_heads=2, bias_init=nn.initializers.normal(0.5))
    valid = jnp.array([[1] * 7, [0, 0] + [1] * 5], bool)
    mask = causal_mask(7) & padding_mask(valid)
    params = jax.jit(lambda: module.init(jax.random.key(1), x, mask=mask)["params"])()
    expected = jax.jit(lambda p: module.apply({"params": p}, x, mask=mask))(params)
    sized = jax.eval_shape(lambda: module.init(jax.random.key(1), jnp.zeros((2, 9, 16)), decode=True))
    assert sized["cache"]["cached_value"].shape == (2, 9, 2, 8) and sized["cache"]["cache_index"].shape == ()
    cache = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), sized["cache"])
    slots = jnp.concatenate([valid, jnp.zeros((2, 2), bool)], axis=1)  # [batch, 9]

    @jax.jit
    def step(cache, chunk):
        out, state = module.apply({"params": params, "cache": cache}, chunk, mask=padding_mask(slots), decode=True,
                                  mutable=["cache"])
        return out, state["cache"]

    outs = []
    for start, stop in [(0, 4), (4, 5), (5, 7)]:
        out, cache = step(cache, x[:, start:stop])
        outs.append(out)
    outs = jnp.concatenate(outs, 1)
    np.testing.assert_allclose(outs[0], expected[0], atol=1e-5)
    np.testing.assert_allclose(outs[1, 2:], expected[1, 2:], atol=1e-5)
    assert int(cache["cache_index"]) == 7
    np.testing.assert_array_equal(cache["cached_key"][:, 7:], 0)
    with pytest.raises(ValueError, match="self-attention"):
        jax.eval_shape(lambda: module.apply({"params": params}, x, x, decode=True, mutable=["cache"]))


def test_dropout_only_when_not_deterministic(tiny):
    _, _, params = tiny
    model = GPT(**{**TINY, "dropout_rate": 0.5})
    ids = tokens((1, 5))
    np.testing.assert_allclose(forward(model, params, ids), forward(GPT(**TINY), params, ids), atol=1e-6)
    a, b = (forward(model, params, ids, deterministic=False, rng=jax.random.key(s)) for s in (0, 1))
    assert not np.allclose(a, b)


def test_bfloat16_keeps_logits_float32(tiny):
    _, _, params = tiny
    ids = tokens((1, 5))
    logits16 = forward(GPT(**TINY, dtype=jnp.bfloat16), params, ids)
    assert logits16.dtype == jnp.float32
    np.testing.assert_allclose(logits16, forward(GPT(**TINY), params, ids), atol=0.05)


def test_gpt_from_config_variants_overrides_and_errors():
    import ml_collections

    model = gpt_from_config(ml_collections.ConfigDict(dict(name="gpt", variant="medium", dropout_rate=0.1)))
    assert (model.width, model.depth, model.num_heads, model.mlp_dim) == (1024, 24, 16, 4096)
    assert model.vocab_size == 50257 and model.n_positions == 1024 and model.dropout_rate == 0.1
    model = gpt_from_config(dict(name="gpt", variant=None, dtype="bfloat16", **TINY))
    assert model.dtype == jnp.bfloat16 and model.mlp_dim is None and model.width == 32
    assert gpt_from_config(dict(variant="gpt2-xl", depth=2)).depth == 2
    with pytest.raises(ValueError, match="unknown model config"):
        gpt_from_config(dict(variant="small", n_embd=3))
    with pytest.raises(ValueError, match="missing"):
        gpt_from_config(dict(width=32))
    with pytest.raises(ValueError, match="variant"):
        gpt2_variant("huge")
    with pytest.raises(ValueError, match="divisible"):
        GPT(vocab_size=10, n_positions=4, width=30, depth=1, num_heads=4)


def test_params_shard_over_the_mesh():
    from jaxmodels.training.mesh import create_sharded_state, make_mesh

    model = GPT(vocab_size=64, n_positions=16, width=32, depth=1, num_heads=4)
    mesh = make_mesh({"data": 2, "fsdp": 2, "model": 2})
    params, shardings = create_sharded_state(
        lambda key: model.init(key, jnp.zeros((1, 1), jnp.int32))["params"], jax.random.key(0), mesh)
    assert shardings["wte"]["embedding"].spec == P("model", "fsdp")
    assert shardings["h_0"]["attn"]["query"]["kernel"].spec == P("fsdp", "model", None)
    assert shardings["h_0"]["mlp"]["c_fc"]["kernel"].spec == P("fsdp", "model")
    with jax.set_mesh(mesh):
        logits = jax.jit(lambda p, x: model.apply({"params": p}, x))(params, jnp.zeros((4, 8), jnp.int32))
    assert logits.shape == (4, 8, 64)
