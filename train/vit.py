r"""Trains a Vision Transformer (Dosovitskiy et al., 2021) image classifier.

    python train/vit.py --config=configs/vit.py:digits --workdir=runs/vit_digits
    python train/vit.py --config=configs/vit.py:cifar10 --workdir=runs/vit_cifar10 \
        --config.optimizer.lr=5e-4 --config.batch_size=256

Re-running with the same --workdir resumes from its latest checkpoint.
"""
from jaxmodels.projects.vit import experiment
from jaxmodels.training import launch

if __name__ == "__main__":
    launch.main(experiment.train_and_evaluate, config_help="configs/vit.py:<variant>")
