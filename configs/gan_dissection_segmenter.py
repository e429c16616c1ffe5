r"""Scene segmenter configs (GAN Dissection's s_c(x) on procedural scenes): ``--config=configs/gan_dissection_segmenter.py:<variant>``.

Variants:
  scenes  default: 64x64 scenes (``jaxmodels.projects.gan_dissection.scenes``), 10,000 training and 500 held-out
          scenes (random flips), the 4-level U-Net of ``jaxmodels.gan.segmenter`` (widths 16-32-64-128,
          0.49M parameters), Adam 3e-3 (20 warm-up steps, cosine decay), batch 16, 400 steps. Measured on
          2 CPU cores shared with other jobs (load ~6.5): 7 min 20 s wall (~1 step/s), held-out pixel
          accuracy 0.995, mean IoU 0.954 (window 0.76, trunk 0.91, every other class >= 0.95).
  tiny    a seconds-long smoke run: 32x32 scenes, widths 8-16, 8 steps (the tests run it).
Any field can be overridden: ``--config.num_train_steps=2000 --config.data.num_train=50000``.
"""
import ml_collections

NUM_CLASSES = 13  # len(jaxmodels.projects.gan_dissection.scenes.CLASSES); the experiment checks that they agree


def base_config() -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.experiment = "segmenter"
    config.seed = 0
    config.batch_size = 16
    config.eval_batch_size = 100
    config.num_train_steps = 400
    config.log_every_steps = 50
    config.eval_every_steps = 200
    config.checkpoint_every_steps = 200
    config.keep_checkpoints = 2
    config.async_checkpoints = True
    config.mesh = ml_collections.ConfigDict(dict(data=-1, fsdp=1, model=1))
    config.optimizer = ml_collections.ConfigDict(dict(
        name="adam", lr=3e-3, schedule="warmup_cosine", warmup_steps=20, end_lr=0.0, b1=0.9, b2=0.999, eps=1e-8,
        grad_clip_norm=1.0))
    config.model = ml_collections.ConfigDict(dict(
        name="scene_segmenter", num_classes=NUM_CLASSES, widths=(16, 32, 64, 128), dtype="float32"))
    config.data = ml_collections.ConfigDict(dict(
        source="scenes", num_train=10_000, num_test=500, image_size=64, seed=0, random_flip=True))
    return config


def scenes() -> ml_collections.ConfigDict:
    return base_config()


def tiny() -> ml_collections.ConfigDict:
    config = base_config()
    config.batch_size = 16
    config.eval_batch_size = 32
    config.num_train_steps = 8
    config.log_every_steps = 4
    config.eval_every_steps = 4
    config.checkpoint_every_steps = 4
    config.optimizer.warmup_steps = 2
    config.model.widths = (8, 16)
    config.data.num_train = 256
    config.data.num_test = 64
    config.data.image_size = 32
    return config


VARIANTS = {"scenes": scenes, "tiny": tiny}


def get_config(variant: str = "scenes") -> ml_collections.ConfigDict:
    if variant not in VARIANTS:
        raise ValueError(f"Unknown segmenter config variant {variant!r}; choose from {sorted(VARIANTS)}")
    return VARIANTS[variant]()
