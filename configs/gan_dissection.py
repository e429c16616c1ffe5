r"""Progressive-GAN-style generator configs for GAN Dissection: ``--config=configs/gan_dissection.py:<variant>``.

Variants:
  scenes        offline default: the procedural 64x64 scenes (``jaxmodels/projects/gan_dissection/scenes.py``, 50k train,
                1,024 held out), a small generator (nf(s) = min(256 / 2^s, 64): 64 units at 4x4 and 8x8 --
                layer4, the dissected 8x8 layer, has 64 units -- 32 at 16x16, 16 at 32x32, 8 at 64x64; latent 128;
                278k parameters, critic 214k) with ProGAN's recipe (WGAN-GP, lambda 10, drift 0.001, n_critic 1,
                Adam 1e-3 / beta1 0 / beta2 0.99, EMA 0.999) at batch 8, 10k steps (80k images). Sized for this repo's 2-CPU
                machine (shared with other jobs): measured 4.5-5.4 steps/s over steps 1000-3000 of a 3000-step
                run (load ~1-3; its samples already show sky, clouds, sun, grass and houses), 4.0-4.4 steps/s
                after compilation in a 200-step run (load ~2; 3.2-3.6 at load ~3), 1.8 steps/s at load ~5: 10k
                steps in ~35-55 minutes idle (the README's run: ~75 minutes, sharing the CPUs with the test suite). A step's time is about linear in the batch
                (batch 16 halves the rate).
  tiny          a seconds-long smoke run: 16x16 scenes, widths 16 / 8 / 4 (the tests run it).
  celeba64      TFDS ``celeb_a`` centre-cropped to 140 px and resized to 64, random flips, the paper's widths
                (fmap_base 8192, fmap_max 512, latent 512), batch 16 (the Theano baseline's minibatch_default).
  lsun_church   TFDS ``lsun/church_outdoor`` centre-cropped to a square and resized to 64 (the GAN Dissection
                church model is this recipe at 256 px), random flips, the paper's widths.
The paper's runs show 15M images (total_kimg 15000): ~940k steps at batch 16. Any field can be overridden:
``--config.gan.loss=nonsaturating --config.gan.r1_gamma=10 --config.num_train_steps=5000``.
"""
import ml_collections
from ml_collections import config_dict


def generator(**fields) -> ml_collections.ConfigDict:
    model = ml_collections.ConfigDict(dict(
        name="progan_generator", resolution=64, latent_dim=512, fmap_base=8192, fmap_max=512, num_channels=3,
        normalize_latents=True))
    model.update(fields)
    return model


def discriminator(**fields) -> ml_collections.ConfigDict:
    """The critic's widths; its resolution and channels are the generator's (``config.model``)."""
    d = ml_collections.ConfigDict(dict(fmap_base=8192, fmap_max=512, mbstd_group_size=4))
    d.update(fields)
    return d


def gan(**fields) -> ml_collections.ConfigDict:
    """ProGAN's loss (``loss.py D_wgangp_acgan``): WGAN-GP, lambda 10, target 1, epsilon_drift 0.001, n_critic 1."""
    g = ml_collections.ConfigDict(dict(loss="wgan_gp", n_critic=1, gp_lambda=10.0, gp_target=1.0, drift=0.001,
                                       r1_gamma=0.0))
    g.update(fields)
    return g


def scenes_data(**fields) -> ml_collections.ConfigDict:
    d = ml_collections.ConfigDict(dict(
        source="scenes", num_train=50_000, num_test=1_024, image_size=64, seed=0, channels=3,
        train_split="train", eval_split="test", random_flip=False, pad=False, center_crop=0))
    d.update(fields)
    return d


def tfds_data(**fields) -> ml_collections.ConfigDict:
    d = ml_collections.ConfigDict(dict(
        source="tfds", name="", data_dir=config_dict.placeholder(str), train_split="train", eval_split="validation",
        image_size=64, channels=3, random_flip=True, pad=False, center_crop=0, label_key=""))
    d.update(fields)
    return d


def base_config() -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.experiment = "gan"
    config.seed = 0
    config.batch_size = 16
    config.eval_batch_size = 256
    config.num_train_steps = 937_500  # 15M images at batch 16
    config.log_every_steps = 100
    config.eval_every_steps = 10_000
    config.checkpoint_every_steps = 10_000
    config.keep_checkpoints = 3
    config.async_checkpoints = True
    config.mesh = ml_collections.ConfigDict(dict(data=-1, fsdp=1, model=1))
    config.ema_decay = 0.999  # G_smoothing
    config.ema_warmup = False
    # ProGAN (config.py): Adam alpha 0.001, beta1 0, beta2 0.99, eps 1e-8, for G and D alike.
    config.optimizer = ml_collections.ConfigDict(dict(
        name="adam", lr=1e-3, schedule="constant", warmup_steps=0, b1=0.0, b2=0.99, eps=1e-8, grad_clip_norm=0.0))
    config.disc_optimizer = config_dict.placeholder(ml_collections.ConfigDict)  # None: same as config.optimizer
    config.model = generator()
    config.discriminator = discriminator()
    config.gan = gan()
    config.data = tfds_data()
    config.sample = ml_collections.ConfigDict(dict(num_samples=64, seed=0))
    return config


def scenes() -> ml_collections.ConfigDict:
    config = base_config()
    config.data = scenes_data()
    # Small widths for 2 CPU cores; latent 128 (the CIFAR-10 ProGAN uses 128 with fmap_max 128).
    config.model = generator(resolution=64, latent_dim=128, fmap_base=256, fmap_max=64)
    config.discriminator = discriminator(fmap_base=256, fmap_max=64)
    config.batch_size = 8
    config.eval_batch_size = 128
    config.num_train_steps = 10_000
    config.log_every_steps = 100
    config.eval_every_steps = 2_500
    config.checkpoint_every_steps = 2_500
    config.sample.num_samples = 64
    return config


def tiny() -> ml_collections.ConfigDict:
    config = scenes()
    config.data = scenes_data(num_train=256, num_test=64, image_size=16)
    config.model = generator(resolution=16, latent_dim=16, fmap_base=32, fmap_max=16)
    config.discriminator = discriminator(fmap_base=32, fmap_max=16)
    config.batch_size = 8
    config.eval_batch_size = 32
    config.num_train_steps = 20
    config.log_every_steps = 10
    config.eval_every_steps = 10
    config.checkpoint_every_steps = 10
    config.ema_warmup = True
    config.sample.num_samples = 16
    return config


def celeba64() -> ml_collections.ConfigDict:
    config = base_config()
    config.data = tfds_data(name="celeb_a", center_crop=140)
    return config


def lsun_church() -> ml_collections.ConfigDict:
    config = base_config()
    # LSUN images are 256 px on the short side: centre-crop a 256 px square, then resize to 64.
    config.data = tfds_data(name="lsun/church_outdoor", center_crop=256)
    return config


VARIANTS = {"scenes": scenes, "tiny": tiny, "celeba64": celeba64, "lsun_church": lsun_church}


def get_config(variant: str = "scenes") -> ml_collections.ConfigDict:
    if variant not in VARIANTS:
        raise ValueError(f"Unknown gan config variant {variant!r}; choose from {sorted(VARIANTS)}")
    return VARIANTS[variant]()
