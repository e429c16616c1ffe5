r"""Counting toy task configs (Zhang et al., ICLR 2018, sec. 5.1, fig. 3): ``--config=configs/vqa_counting_toy.py:<variant>``.

Variants:
  paper   the figure: 101 values each of the side length l and the noise q in [0, 1], the other
          parameter at 0 ("easy") or 0.5 ("hard"); per point the counter model and the baseline train
          for 1000 iterations (batch 1024, Adam 0.01) and evaluate on 200 batches. 404 points.
  coarse  the same protocol on 11 values per sweep (0, 0.1, ..., 1; 44 points), a CPU-sized run
          (about 30 s per point on 2 CPU cores).
  tiny    a seconds-long smoke run (the tests run it).
"""
import ml_collections


def base_config() -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.experiment = "counting_toy"
    config.seed = 0
    config.objects = 10  # k: proposals per example and largest count
    config.pieces = 16  # d: pieces of every piecewise-linear f
    config.batch_size = 1024
    config.learning_rate = 0.01
    config.train_iterations = 1000
    config.eval_batches = 200
    config.resolution = 101  # values per sweep, linspace(0, 1)
    config.sweep = ("side", "noise")
    config.settings = ml_collections.ConfigDict({"easy": 0.0, "hard": 0.5})  # value of the non-swept parameter
    config.chunk_size = 4  # sweep points trained at once (jit(vmap)); raise on accelerators
    return config


def paper() -> ml_collections.ConfigDict:
    return base_config()


def coarse() -> ml_collections.ConfigDict:
    config = base_config()
    config.resolution = 11
    return config


def tiny() -> ml_collections.ConfigDict:
    config = base_config()
    config.batch_size = 64
    config.train_iterations = 30
    config.eval_batches = 4
    config.resolution = 3
    config.chunk_size = 4
    return config


VARIANTS = {f.__name__: f for f in (paper, coarse, tiny)}


def get_config(variant: str = "paper") -> ml_collections.ConfigDict:
    if variant not in VARIANTS:
        raise ValueError(f"configs/vqa_counting_toy.py: unknown variant {variant!r}; choose one of {sorted(VARIANTS)}")
    return VARIANTS[variant]()
