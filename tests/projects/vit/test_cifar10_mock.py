"""The real ``cifar10`` config (ViT-S/4, DeiT recipe, TFDS via tfds.data_source + grain) runs end to
end on ``tfds.testing.mock_data`` for 2 steps, with only batch sizes, step counts and depth shrunk
(2 of ViT-S's 12 blocks: compiling all 12 took most of this test's time; the blocks are identical)."""
import numpy as np
import tensorflow_datasets as tfds

import jaxmodels
from jaxmodels.projects.vit.experiment import train_and_evaluate
from vit_runs import vit_configs


def test_cifar10_config_runs_on_mock_tfds(tmp_path):
    config = vit_configs.get_config("cifar10")
    config.update_from_flattened_dict({
        "batch_size": 16, "eval_batch_size": 16, "num_train_steps": 2, "log_every_steps": 1,
        "eval_every_steps": 0, "checkpoint_every_steps": 2, "model.num_layers": 2})
    assert (config.model.variant, config.data.augment, config.loss.mixup_alpha) == ("S/4", "crop_flip", 0.8)
    with tfds.testing.mock_data(num_examples=48):
        result = train_and_evaluate(config, str(tmp_path))
    assert result.step == 2 and np.isfinite(result.eval_metrics["loss"])
    assert 0.0 <= result.eval_metrics["accuracy"] <= 1.0
    model, variables, loaded = jaxmodels.load(tmp_path)
    assert loaded.data.name == "cifar10" and loaded.model.num_layers == 2
    assert model.apply(variables, np.zeros((2, 32, 32, 3), np.float32), train=False).shape == (2, 10)
