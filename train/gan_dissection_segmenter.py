r"""Trains the scene segmenter of the GAN Dissection reproduction (s_c(x) for dissection and ACE).

    python train/gan_dissection_segmenter.py --config=configs/gan_dissection_segmenter.py:scenes --workdir=runs/segmenter_scenes
    python train/gan_dissection_segmenter.py --config=configs/gan_dissection_segmenter.py:tiny --workdir=/tmp/segmenter_tiny

Trains on rendered 64x64 scenes with exact label maps (jaxmodels.projects.gan_dissection.scenes) and evaluates
pixel accuracy and per-class IoU on held-out scenes. Writes checkpoints, TensorBoard metrics,
metrics.jsonl and <workdir>/results.json (pixel accuracy, mean IoU, per-class IoU). Re-running with the
same --workdir resumes from the latest checkpoint.
"""
from jaxmodels.projects.gan_dissection import segmenter
from jaxmodels.training import launch

APPLY_HINT = ("logits = model.apply(variables, images)  # images in [-1, 1]; "
              "features = model.apply(variables, images, method='features')")

if __name__ == "__main__":
    launch.main(segmenter.train_and_evaluate, config_help="configs/gan_dissection_segmenter.py:<variant>",
                apply_hint=APPLY_HINT)
