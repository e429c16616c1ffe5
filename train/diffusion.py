r"""Trains a denoising diffusion model (DDPM, improved DDPM, classifier-free guidance).

    python train/diffusion.py --config=configs/diffusion.py:digits --workdir=runs/diffusion_digits
    python train/diffusion.py --config=configs/diffusion.py:cifar10 --workdir=runs/ddpm_cifar10 \
        --config.data.data_dir=/path/to/tensorflow_datasets

Writes checkpoints (with the EMA parameters), TensorBoard metrics, metrics.jsonl and, after every
evaluation, a sample grid <workdir>/samples/step_<n>.png. Re-running with the same --workdir resumes
from the latest checkpoint. Sample and measure a finished run with train/diffusion_sample.py.
"""
from jaxmodels.projects.diffusion import experiment
from jaxmodels.training import launch

APPLY_HINT = ("from jaxmodels.diffusion import pipeline; "
              "images = pipeline.sample(model, variables, config, num_samples=64, sampler='ddim', num_steps=50)")

if __name__ == "__main__":
    launch.main(experiment.train_and_evaluate, config_help="configs/diffusion.py:<variant>", apply_hint=APPLY_HINT)
