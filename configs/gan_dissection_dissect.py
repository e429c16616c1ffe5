r"""GAN Dissection report configs (Bau et al., ICLR 2019): ``--config=configs/gan_dissection_dissect.py:<variant>``.

The two inputs are run directories (or checkpoints) of the other two binaries, given as overrides:
``--config.gan_workdir=runs/gan_scenes`` (train/gan_dissection.py) and
``--config.segmenter_workdir=runs/segmenter_scenes`` (train/gan_dissection_segmenter.py).
``config.report`` holds the fields of ``jaxmodels.projects.gan_dissection.report.ReportOptions``
(the official defaults are in its docstring); ``concepts`` and ``ignore_classes`` are
comma-separated class names.

Variants:
  default  sample counts close to the paper's: 10,000 dissection samples at layer4, 200 top samples
           per unit, 4,000 searched z, 400 + 100 samples and 10 epochs for the unit-set search
           (paper: 10,000; 10,000; 1,000 + 200), 2,000 samples per FID, 20 artifact units.
  cpu      the README's 20-minute run on 2 CPU cores: 3,000 dissection samples, 2,000 searched,
           200 + 50 samples and 5 epochs, 1,000 samples per FID; concepts tree, house, sky, cloud.
  tiny     a seconds-long smoke run on the tiny GAN and segmenter (the tests run it).
"""
import ml_collections

VARIANTS = ("default", "cpu", "tiny")


def report_options(**fields) -> ml_collections.ConfigDict:
    """``ReportOptions`` as config fields (the sequences of ints as tuples, of class names as strings)."""
    options = ml_collections.ConfigDict(dict(
        layer="layer4", num_samples=10_000, top_k=200, seed=1, threshold_seed=2, batch_size=100,
        unit_figures=12, figure_samples=8, concepts="", max_concepts=4, search_samples=4_000,
        train_samples=400, eval_samples=100, epochs=10, ablation_sizes=(1, 2, 4, 8, 12, 16, 20),
        ablation_samples=500, num_random=5, insertion_units=20, insertion_window=2, insertion_samples=100,
        fid_samples=2_000, real_samples=2_000, num_artifact=20, ignore_classes=""))
    options.update(fields)
    return options


def get_config(variant: str = "default") -> ml_collections.ConfigDict:
    if variant not in VARIANTS:
        raise ValueError(f"configs/gan_dissection_dissect.py: unknown variant {variant!r}; choose from {VARIANTS}")
    config = ml_collections.ConfigDict()
    config.experiment = "gan_dissection_dissect"
    config.gan_workdir = ""  # required: a train/gan_dissection.py run directory or checkpoint
    config.segmenter_workdir = ""  # required: a train/gan_dissection_segmenter.py run directory or checkpoint
    config.report = report_options()
    if variant == "cpu":
        config.report.update(dict(
            num_samples=3_000, search_samples=2_000, train_samples=200, eval_samples=50, epochs=5,
            ablation_samples=300, fid_samples=1_000, real_samples=1_000, concepts="tree,house,sky,cloud"))
    elif variant == "tiny":
        config.report.update(dict(
            num_samples=64, top_k=16, threshold_seed=2, batch_size=32, unit_figures=2, figure_samples=3,
            max_concepts=1, search_samples=64, train_samples=8, eval_samples=4, epochs=1, ablation_sizes=(1, 2, 4),
            ablation_samples=16, num_random=2, insertion_units=2, insertion_samples=3, fid_samples=32,
            real_samples=32, num_artifact=2))
    return config
