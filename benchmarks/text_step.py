"""BERT-base MLM train step and GPT-2 small generation on CPU: jaxmodels (jit) vs ``transformers`` (PyTorch eager).

Run: ``python benchmarks/text_step.py --repeats 5`` (needs ``pip install -r requirements-bench.txt``).
Both sides get the same weights (ours converted from the torch model with ``jaxmodels.convert``).

Cases:
  bert_mlm        BERT-base (Chinese vocab 21,128), seq 128, batch 8, 20 masked positions per sequence
                  (the paper's max_predictions), one AdamW step: ours gathers the masked positions
                  before the vocab projection (google-research/bert ``gather_indexes``);
                  ``BertForMaskedLM`` projects all 128 positions and ignores labels of -100.
  bert_mlm_full   the same step with our head also projecting all positions (like for like).
  gpt2_generate   GPT-2 small (124M), batch 1, a 32-token prompt, 64 new tokens, greedy: ours is
                  one jitted call (prefill + ``lax.while_loop`` with the KV cache); ``generate`` of
                  ``GPT2LMHeadModel`` uses its own KV cache in eager mode.
Ratio = ours / torch throughput (higher is better). Medians of interleaved repeats; torch runs on
its faster thread count (1 or all cores, timed in warm-up: on a loaded 2-core VM torch's 2-thread
OpenMP can collapse).

Measured on the 2-vCPU development VM (2026-11-23, 5 interleaved repeats, load 1.7, torch on 2
threads): bert_mlm 1.246 vs 1.226 sequences/s = 1.02; bert_mlm_full 1.176 vs 1.512 = 0.78;
gpt2_generate 35.2 vs 20.0 tokens/s = 1.76 (goal 2x not met: 28 ms per token for ~0.5 GB of
float32 weights is near the VM's memory bandwidth, the floor for batch-1 decoding).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time

CASES = ("bert_mlm", "bert_mlm_full", "gpt2_generate")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--cases", default=",".join(CASES))
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--seq", type=int, default=128)
    p.add_argument("--new-tokens", type=int, default=64)
    p.add_argument("--prompt", type=int, default=32)
    p.add_argument("--small", action="store_true", help="tiny models (smoke test of the script)")
    p.add_argument("--threads", type=int, default=0, help="torch threads; 0 = the faster of 1 and all")
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    args.cases = [c for c in args.cases.split(",") if c]
    bad = [c for c in args.cases if c not in CASES]
    if bad:
        p.error(f"unknown case(s) {bad}; choose from {CASES}")
    return args


def _setup():
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    sys.modules.setdefault("torchvision", None)  # PyPI's CUDA torchvision cannot load over CPU torch
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _time(fn, sync) -> float:
    start = time.perf_counter()
    sync(fn())
    return time.perf_counter() - start


# ---------------------------------------------------------------------------------------------
# BERT MLM train step


def bert_case(args, full_logits: bool):
    import jax
    import jax.numpy as jnp
    import numpy as np
    import optax
    import torch
    import transformers

    from jaxmodels.convert.hf_bert import params_from_hf_bert
    from jaxmodels.text.bert import Bert, masked_lm_loss

    size = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=2, intermediate_size=128) if args.small \
        else dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072)
    vocab, batch, seq, preds = 21128, args.batch, args.seq, 20
    torch.manual_seed(0)
    hf_cfg = transformers.BertConfig(vocab_size=vocab, max_position_embeddings=512, **size)
    torch_model = transformers.BertForMaskedLM(hf_cfg).train()
    model = Bert(vocab_size=vocab, head="mlm", hidden_size=size["hidden_size"], num_layers=size["num_hidden_layers"],
                 num_heads=size["num_attention_heads"], intermediate_size=size["intermediate_size"])
    params = jax.tree.map(jnp.asarray, params_from_hf_bert(torch_model.state_dict(), size["num_attention_heads"]))

    rng = np.random.default_rng(0)
    ids = rng.integers(106, vocab, size=(batch, seq)).astype(np.int32)
    positions = np.sort(np.stack([rng.choice(np.arange(1, seq - 1), preds, replace=False) for _ in range(batch)]), 1)
    labels = np.take_along_axis(ids, positions, 1)
    mask_batch = dict(input_ids=ids, token_type_ids=np.zeros_like(ids), attention_mask=np.ones_like(ids),
                      masked_lm_positions=positions.astype(np.int32), masked_lm_ids=labels,
                      masked_lm_weights=np.ones(labels.shape, np.float32))
    tx = optax.adamw(1e-4, b1=0.9, b2=0.999, eps=1e-6, weight_decay=0.01)

    def loss_fn(p, b, key):
        if full_logits:
            out = model.apply({"params": p}, b["input_ids"], b["token_type_ids"], b["attention_mask"], train=True,
                              rngs={"dropout": key})
            logits = jnp.take_along_axis(out["mlm_logits"], b["masked_lm_positions"][..., None], 1)
        else:
            logits = model.apply({"params": p}, b["input_ids"], b["token_type_ids"], b["attention_mask"],
                                 b["masked_lm_positions"], train=True, rngs={"dropout": key})["mlm_logits"]
        return masked_lm_loss(logits, b["masked_lm_ids"], b["masked_lm_weights"])[0]

    @jax.jit
    def step(p, o, b, key):
        loss, grads = jax.value_and_grad(loss_fn)(p, b, key)
        updates, o = tx.update(grads, o, p)
        return optax.apply_updates(p, updates), o, loss

    state = [params, tx.init(params)]
    jbatch = jax.tree.map(jnp.asarray, mask_batch)

    def ours():
        state[0], state[1], loss = step(state[0], state[1], jbatch, jax.random.key(0))
        return loss

    hf_labels = torch.full((batch, seq), -100, dtype=torch.long)
    hf_labels.scatter_(1, torch.as_tensor(positions, dtype=torch.long), torch.as_tensor(labels, dtype=torch.long))
    tids = torch.as_tensor(ids, dtype=torch.long)
    opt = torch.optim.AdamW(torch_model.parameters(), lr=1e-4, eps=1e-6, weight_decay=0.01)

    def theirs():
        opt.zero_grad(set_to_none=True)
        loss = torch_model(input_ids=tids, attention_mask=torch.ones_like(tids), labels=hf_labels).loss
        loss.backward()
        opt.step()
        return loss

    return ours, theirs, batch, "sequences/s"


# ---------------------------------------------------------------------------------------------
# GPT-2 generation


def gpt_case(args):
    import jax
    import jax.numpy as jnp
    import numpy as np
    import torch
    import transformers

    from jaxmodels.convert.hf_gpt2 import config_from_hf_gpt2, params_from_hf_gpt2
    from jaxmodels.text.generation import generate
    from jaxmodels.text.gpt import gpt_from_config

    size = dict(n_embd=64, n_layer=2, n_head=2) if args.small else dict(n_embd=768, n_layer=12, n_head=12)
    torch.manual_seed(0)
    hf_cfg = transformers.GPT2Config(vocab_size=50257, n_positions=1024, **size)
    torch_model = transformers.GPT2LMHeadModel(hf_cfg).eval()
    cfg = config_from_hf_gpt2(hf_cfg.to_dict())
    model = gpt_from_config(cfg)
    params = jax.tree.map(jnp.asarray, params_from_hf_gpt2(torch_model.state_dict(), cfg))
    prompt = np.random.default_rng(0).integers(0, 50000, size=(1, args.prompt)).astype(np.int32)
    jprompt, jmask = jnp.asarray(prompt), jnp.ones(prompt.shape, jnp.int32)

    def ours():
        return generate(model, params, jprompt, jmask, max_new_tokens=args.new_tokens,
                        rng=jax.random.key(0), temperature=0.0)["tokens"]

    tprompt = torch.as_tensor(prompt, dtype=torch.long)

    def theirs():
        with torch.no_grad():
            return torch_model.generate(tprompt, attention_mask=torch.ones_like(tprompt), do_sample=False,
                                        max_new_tokens=args.new_tokens, min_new_tokens=args.new_tokens,
                                        pad_token_id=0)

    return ours, theirs, args.new_tokens, "tokens/s"


def main(argv=None):
    args = parse_args(argv)
    _setup()
    import jax
    import torch

    rows = []
    for case in args.cases:
        if case == "gpt2_generate":
            ours, theirs, units, unit_name = gpt_case(args)
        else:
            ours, theirs, units, unit_name = bert_case(args, full_logits=case == "bert_mlm_full")
        sync_ours = jax.block_until_ready
        sync_torch = lambda x: x  # noqa: E731  (eager: the result is ready when the call returns)
        for _ in range(args.warmup):
            _time(ours, sync_ours)
        threads = args.threads
        if threads == 0:
            timings = {}
            for n in sorted({1, os.cpu_count() or 1}):
                torch.set_num_threads(n)
                _time(theirs, sync_torch)
                timings[n] = _time(theirs, sync_torch)
            threads = min(timings, key=timings.get)
        torch.set_num_threads(threads)
        for _ in range(args.warmup):
            _time(theirs, sync_torch)
        t_ours, t_theirs = [], []
        for _ in range(args.repeats):  # interleaved
            t_ours.append(_time(ours, sync_ours))
            t_theirs.append(_time(theirs, sync_torch))
        ours_rate, theirs_rate = units / statistics.median(t_ours), units / statistics.median(t_theirs)
        rows.append(dict(case=case, unit=unit_name, ours=ours_rate, torch=theirs_rate, ratio=ours_rate / theirs_rate,
                         torch_threads=threads))
        print(f"{case}: ours {ours_rate:.3f} vs torch {theirs_rate:.3f} {unit_name}", flush=True)

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"\n{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, load {load:.1f}, "
          f"jax {jax.__version__}, torch {torch.__version__}, repeats {args.repeats} (medians)\n")
    print("| case | unit | ours | transformers (torch) | ours/torch |")
    print("|---|---|---:|---:|---:|")
    for r in rows:
        print(f"| {r['case']} | {r['unit']} | {r['ours']:.3f} | {r['torch']:.3f} | {r['ratio']:.2f} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)
    return rows


if __name__ == "__main__":
    main()
