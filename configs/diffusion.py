r"""Diffusion model configs: ``--config=configs/diffusion.py:<variant>``.

Variants:
  digits            offline default: scikit-learn's 8x8 digits padded to 16x16 in [-1, 1]; a small
                    DDPM U-Net, L_simple, linear schedule T = 1000; a few CPU minutes.
  digits_improved   the same data with improved DDPM's recipe: cosine schedule, learned variances,
                    L_hybrid (lambda 0.001), scale-shift norm (the NLL comparison in the README).
  digits_cond       class-conditional digits with classifier-free guidance training (p_uncond 0.1).
  tiny              a seconds-long smoke run on digits with T = 100 (the tests run it).
  cifar10           the DDPM paper recipe (Ho et al. 2020, App. B; score_sde configs/vp/ddpm/cifar10):
                    35.7M-parameter U-Net (ch 128, mult 1,2,2,2, 2 res blocks, attention at 16x16,
                    dropout 0.1), linear betas 1e-4..0.02, T = 1000, eps-prediction, fixed-large
                    variance, Adam 2e-4 with 5000 warm-up steps, grad clip 1, batch 128, random
                    flips, EMA 0.9999, 800k steps. TFDS ``cifar10`` must be prepared offline.
  cifar10_improved  improved DDPM's CIFAR-10 flags (Nichol & Dhariwal 2021): 3 res blocks, attention
                    at 16 and 8 with 4 heads, scale-shift norm, dropout 0.3, learned sigma, cosine
                    schedule T = 4000, L_hybrid, lr 1e-4, batch 128, 500k steps.
  mnist             TFDS ``mnist`` padded to 32x32, a mid-sized U-Net.
  celeba64          TFDS ``celeb_a`` centre-cropped to 140 px and resized to 64 (the DDIM paper's
                    CelebA setup), ch 128, mult 1,2,2,2,4, unconditional.
Any field can be overridden: ``--config.diffusion.loss_type=hybrid --config.num_train_steps=5000``.
"""
import ml_collections
from ml_collections import config_dict


def unet(**fields) -> ml_collections.ConfigDict:
    model = ml_collections.ConfigDict(dict(
        name="unet", ch=128, ch_mult=(1, 2, 2, 2), num_res_blocks=2, attn_resolutions=(16,), dropout=0.1,
        learn_sigma=False, num_classes=0, num_heads=1, use_scale_shift_norm=False, dtype="float32"))
    model.update(fields)
    return model


def diffusion(**fields) -> ml_collections.ConfigDict:
    d = ml_collections.ConfigDict(dict(
        schedule="linear", num_timesteps=1000, mean_type="eps", var_type="fixed_large", rescale_timesteps=False,
        loss_type="simple", hybrid_lambda=0.001, timestep_sampler="uniform", p_uncond=0.0))
    d.update(fields)
    return d


def data(**fields) -> ml_collections.ConfigDict:
    d = ml_collections.ConfigDict(dict(
        source="tfds", name="", data_dir=config_dict.placeholder(str), train_split="train", eval_split="test", image_size=32, channels=3,
        random_flip=False, pad=False, center_crop=0, label_key="label"))
    d.update(fields)
    return d


def sample(**fields) -> ml_collections.ConfigDict:
    """What the training loop's sample grids (and ``train/diffusion_sample.py`` defaults) use."""
    s = ml_collections.ConfigDict(dict(sampler="ddim", num_steps=50, eta=0.0, num_samples=64, guidance_scale=0.0,
                                       clip_denoised=True, seed=0))
    s.update(fields)
    return s


def base_config() -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.experiment = "diffusion"
    config.seed = 0
    config.batch_size = 128
    config.eval_batch_size = 256
    config.num_train_steps = 800_000
    config.log_every_steps = 100
    config.eval_every_steps = 10_000
    config.checkpoint_every_steps = 10_000
    config.keep_checkpoints = 3
    config.async_checkpoints = True
    config.mesh = ml_collections.ConfigDict(dict(data=-1, fsdp=1, model=1))
    config.ema_decay = 0.9999
    config.ema_warmup = False
    config.optimizer = ml_collections.ConfigDict(dict(
        name="adam", lr=2e-4, schedule="constant", warmup_steps=5000, b1=0.9, b2=0.999, eps=1e-8, grad_clip_norm=1.0))
    config.model = unet()
    config.diffusion = diffusion()
    config.data = data()
    config.sample = sample()
    return config


def digits() -> ml_collections.ConfigDict:
    config = base_config()
    config.data = data(source="digits", name="digits", image_size=16, channels=1, pad=True)
    # Sized for 2 CPU cores (~0.5 s/step): the paper's CIFAR-10 net is 35.7M parameters, this is ~1M.
    config.model = unet(ch=32, ch_mult=(1, 2, 2), num_res_blocks=1, attn_resolutions=(8,), dropout=0.1)
    config.batch_size = 64
    config.num_train_steps = 2000
    config.log_every_steps = 50
    config.eval_every_steps = 500
    config.checkpoint_every_steps = 500
    config.ema_decay = 0.999
    config.ema_warmup = True
    config.optimizer.lr = 1e-3
    config.optimizer.warmup_steps = 200
    config.sample = sample(num_samples=100, num_steps=50)
    return config


def digits_improved() -> ml_collections.ConfigDict:
    config = digits()
    config.model.learn_sigma = True
    config.model.use_scale_shift_norm = True
    config.diffusion = diffusion(schedule="cosine", var_type="learned_range", loss_type="hybrid")
    return config


def digits_cond() -> ml_collections.ConfigDict:
    config = digits()
    config.model.num_classes = 10
    config.diffusion.p_uncond = 0.1
    config.sample.guidance_scale = 1.0
    return config


def tiny() -> ml_collections.ConfigDict:
    config = digits()
    config.model = unet(ch=32, ch_mult=(1, 2), num_res_blocks=1, attn_resolutions=(8,), dropout=0.0)
    config.batch_size = 32
    config.eval_batch_size = 128
    config.num_train_steps = 20
    config.log_every_steps = 10
    config.eval_every_steps = 10
    config.checkpoint_every_steps = 10
    config.optimizer.warmup_steps = 5
    # A short process (the digits recipe has T = 1000): the all-T NLL bound and ancestral sampling of
    # a tiny run scan over T network calls, so T = 100 makes them 10x cheaper.
    config.diffusion.num_timesteps = 100
    config.sample = sample(num_samples=16, num_steps=5)
    return config


def cifar10() -> ml_collections.ConfigDict:
    config = base_config()
    config.data = data(name="cifar10", image_size=32, channels=3, random_flip=True)
    return config


def cifar10_improved() -> ml_collections.ConfigDict:
    config = base_config()
    config.data = data(name="cifar10", image_size=32, channels=3, random_flip=True)
    config.model = unet(ch=128, ch_mult=(1, 2, 2, 2), num_res_blocks=3, attn_resolutions=(16, 8), dropout=0.3,
                        learn_sigma=True, num_heads=4, use_scale_shift_norm=True)
    config.diffusion = diffusion(schedule="cosine", num_timesteps=4000, var_type="learned_range",
                                 loss_type="hybrid", rescale_timesteps=True)
    config.optimizer.lr = 1e-4
    config.optimizer.warmup_steps = 0
    config.optimizer.grad_clip_norm = 0.0  # improved-diffusion does not clip
    config.num_train_steps = 500_000
    config.sample = sample(sampler="ddpm", num_steps=100)
    return config


def mnist() -> ml_collections.ConfigDict:
    config = base_config()
    config.data = data(name="mnist", image_size=32, channels=1, pad=True)
    config.model = unet(ch=64, ch_mult=(1, 2, 2), num_res_blocks=2, attn_resolutions=(16,), dropout=0.1)
    config.num_train_steps = 50_000
    config.eval_every_steps = 5000
    config.checkpoint_every_steps = 5000
    config.ema_decay = 0.9995
    return config


def celeba64() -> ml_collections.ConfigDict:
    config = base_config()
    config.data = data(name="celeb_a", image_size=64, channels=3, random_flip=True, center_crop=140, label_key="",
                       eval_split="validation")
    config.model = unet(ch=128, ch_mult=(1, 2, 2, 2, 4), num_res_blocks=2, attn_resolutions=(16,), dropout=0.1)
    config.num_train_steps = 500_000
    return config


VARIANTS = {"digits": digits, "digits_improved": digits_improved, "digits_cond": digits_cond, "tiny": tiny,
            "cifar10": cifar10, "cifar10_improved": cifar10_improved, "mnist": mnist, "celeba64": celeba64}


def get_config(variant: str = "digits") -> ml_collections.ConfigDict:
    if variant not in VARIANTS:
        raise ValueError(f"Unknown diffusion config variant {variant!r}; choose from {sorted(VARIANTS)}")
    return VARIANTS[variant]()
