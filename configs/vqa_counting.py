r"""VQA v2 with the counting component (Zhang et al., ICLR 2018): ``--config=configs/vqa_counting.py:<variant>``.

Variants:
  paper      the official recipe (``vqa-v2/config.py`` and ``train.py``): 100 bottom-up proposals x 2048
             features, question embedding 300 + GRU 1024, attention 512 with 2 glimpses, classifier
             1024 over the 3000 most frequent answers, dropout 0.5, batch 256, Adam 1.5e-3 halved
             every 50k iterations, 100 epochs over the answerable training questions. Give the data:
             --config.data.features=genome-trainval.h5 (or --config.data.features_tsv=a.tsv,b.tsv)
             --config.data.train_questions=v2_OpenEnded_mscoco_train2014_questions.json
             --config.data.train_annotations=v2_mscoco_train2014_annotations.json
             --config.data.val_questions=...val2014_questions.json --config.data.val_annotations=...
             Reported (README of the official code, test-std): number 51.39, overall 68.41.
  baseline   ``paper`` without the count features (the paper's baseline).
  synthetic  offline default: synthetic scenes written in the VQA v2 on-disk layout (16 proposals of
             64-d class-embedding features; objects proposed 1-3 times with jittered boxes; "how many
             <class>s" and "is there a <class>" questions), a smaller model, 3000 steps.
  synthetic_baseline  the same without the counter.
  tiny       a seconds-long smoke run on a few synthetic scenes (the tests run it).
"""
import ml_collections
from ml_collections import config_dict


def model(**fields) -> ml_collections.ConfigDict:
    cfg = ml_collections.ConfigDict(dict(
        name="vqa_counting", vocab_size=config_dict.placeholder(int), num_answers=config_dict.placeholder(int),
        embedding_features=300, question_features=1024, attention_features=512, mid_features=1024, glimpses=2,
        objects=10, dropout_rate=0.5, count=True))
    cfg.update(fields)
    return cfg


def base_config() -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.experiment = "vqa"
    config.seed = 0
    config.batch_size = 256
    config.eval_batch_size = 256
    config.num_epochs = 100
    config.num_train_steps = 0  # 0: num_epochs over the answerable training questions
    config.log_every_steps = 100
    config.eval_every_steps = 5000
    config.checkpoint_every_steps = 5000
    config.keep_checkpoints = 2
    config.async_checkpoints = True
    config.mesh = ml_collections.ConfigDict(dict(data=-1))
    config.model = model()
    config.data = ml_collections.ConfigDict(dict(
        features="", features_tsv="", feature_dim=2048, num_boxes=100, cache_dir="",
        train_questions="", train_annotations="", val_questions="", val_annotations="", vocab_path="",
        max_answers=3000, max_question_length=0, synthetic=False,
        synthetic_scenes=dict(num_train_images=4000, num_val_images=500, seed=0, num_classes=4, feature_dim=64,
                              max_objects=6, max_duplicates=3)))
    config.optimizer = ml_collections.ConfigDict(dict(name="adam", lr=1.5e-3, schedule="exponential",
                                                      halflife_steps=50_000, grad_clip_norm=0.0))
    return config


def paper() -> ml_collections.ConfigDict:
    return base_config()


def baseline() -> ml_collections.ConfigDict:
    config = base_config()
    config.model.count = False
    return config


def synthetic() -> ml_collections.ConfigDict:
    config = base_config()
    config.data.synthetic = True
    config.data.num_boxes = 16
    config.data.feature_dim = 64
    config.model = model(embedding_features=64, question_features=128, attention_features=128, mid_features=256)
    config.batch_size = 128
    config.eval_batch_size = 256
    config.num_train_steps = 3000
    config.log_every_steps = 100
    config.eval_every_steps = 1000
    config.checkpoint_every_steps = 1000
    config.optimizer.halflife_steps = 1000
    return config


def synthetic_baseline() -> ml_collections.ConfigDict:
    config = synthetic()
    config.model.count = False
    return config


def tiny() -> ml_collections.ConfigDict:
    config = synthetic()
    config.data.synthetic_scenes.num_train_images = 64
    config.data.synthetic_scenes.num_val_images = 16
    config.model = model(embedding_features=16, question_features=32, attention_features=16, mid_features=32)
    config.batch_size = 16
    config.eval_batch_size = 16
    config.num_train_steps = 6
    config.log_every_steps = 3
    config.eval_every_steps = 3
    config.checkpoint_every_steps = 3
    return config


VARIANTS = {f.__name__: f for f in (paper, baseline, synthetic, synthetic_baseline, tiny)}


def get_config(variant: str = "synthetic") -> ml_collections.ConfigDict:
    if variant not in VARIANTS:
        raise ValueError(f"configs/vqa_counting.py: unknown variant {variant!r}; choose one of {sorted(VARIANTS)}")
    return VARIANTS[variant]()
