r"""GAN Dissection of a trained generator: one command from two checkpoints to a report folder.

    python train/gan_dissection_dissect.py --config=configs/gan_dissection_dissect.py:cpu \
        --config.gan_workdir=runs/gan_scenes --config.segmenter_workdir=runs/segmenter_scenes \
        --workdir=runs/gan_scenes/dissection
    python train/gan_dissection_dissect.py --config=configs/gan_dissection_dissect.py \
        --config.gan_workdir=runs/gan_scenes --config.segmenter_workdir=runs/segmenter_scenes \
        --config.report.layer=layer3 --config.report.concepts=tree,house

Loads the generator (EMA weights) and the scene segmenter with ``jaxmodels.load``, then (Bau et al.,
ICLR 2019; ``jaxmodels.projects.gan_dissection.report``): dissects ``config.report.layer`` (IQR thresholds,
IoU per unit and concept, interpretable units), draws each top unit's top-activating samples with its mask,
runs the relaxed unit-set search per concept and the ablation curves (top-n units vs n random units), inserts
the top units into samples that lack the concept, ranks units by per-unit FID and ablates the worst ones.
Everything is written under ``--workdir`` (default <gan_workdir>/dissection; report.md links the figures).
Real images for the FID reference come from the GAN run's own data config (its eval split).
"""
from jaxmodels.projects.gan_dissection import dissect
from jaxmodels.training import launch

if __name__ == "__main__":
    launch.main(dissect.run_dissection, config_help="configs/gan_dissection_dissect.py:<variant>",
                describe=dissect.describe, workdir_required=False,
                workdir_help="Report folder to write (default <gan_workdir>/dissection).")
