r"""Trains the progressive-GAN-style generator that GAN Dissection dissects (WGAN-GP or non-saturating loss).

    python train/gan_dissection.py --config=configs/gan_dissection.py:scenes --workdir=runs/gan_scenes
    python train/gan_dissection.py --config=configs/gan_dissection.py:celeba64 --workdir=runs/gan_celeba64 \
        --config.data.data_dir=/path/to/tensorflow_datasets

Writes checkpoints (generator, its EMA, critic and both optimisers), TensorBoard metrics, metrics.jsonl and,
after every evaluation, a grid of EMA samples <workdir>/samples/step_<n>.png. Re-running with the same
--workdir resumes from the latest checkpoint. ``jaxmodels.load(workdir)`` returns the EMA generator.
"""
from jaxmodels.projects.gan_dissection import experiment
from jaxmodels.training import launch

APPLY_HINT = ("from jaxmodels.gan.progan import sample_latents; "
              "images = model.apply(variables, sample_latents(jax.random.PRNGKey(0), 16, model.latent_dim))")

if __name__ == "__main__":
    launch.main(experiment.train_and_evaluate, config_help="configs/gan_dissection.py:<variant>", apply_hint=APPLY_HINT)
