r"""Trains the VQA v2 model with the counting component (Zhang et al., ICLR 2018).

    python train/vqa_counting.py --config=configs/vqa_counting.py:synthetic --workdir=runs/vqa_synthetic
    python train/vqa_counting.py --config=configs/vqa_counting.py:paper --workdir=runs/vqa \
        --config.data.features=genome-trainval.h5 \
        --config.data.train_questions=v2_OpenEnded_mscoco_train2014_questions.json \
        --config.data.train_annotations=v2_mscoco_train2014_annotations.json \
        --config.data.val_questions=v2_OpenEnded_mscoco_val2014_questions.json \
        --config.data.val_annotations=v2_mscoco_val2014_annotations.json

The run directory gets vocab.json, checkpoints, TensorBoard metrics, metrics.jsonl and, after each
evaluation, eval/predictions_<step>.json (VQA submission format). Re-running with the same
--workdir resumes from the latest checkpoint.
"""
from jaxmodels.projects.vqa_counting import experiment
from jaxmodels.training import launch

APPLY_HINT = ("logits = model.apply(variables, features, boxes, question_ids, question_lengths)  "
              "# answers: json.load(open('<workdir>/vocab.json'))['answer']")

if __name__ == "__main__":
    launch.main(experiment.train_and_evaluate, config_help="configs/vqa_counting.py:<variant>", apply_hint=APPLY_HINT)
