r"""Pretrains BERT with Chinese whole word masking (Cui et al., arXiv 1906.08101).

    python train/bert_wwm_pretrain.py --config=configs/bert_wwm_pretrain.py:people_daily --workdir=runs/bert_pd
    python train/bert_wwm_pretrain.py --config=configs/bert_wwm_pretrain.py:bert_wwm --workdir=runs/bert_wwm \
        --config.data.corpus_path=/data/zhwiki.txt --config.init.hf_path=/models/bert-base-chinese

The run directory gets vocab.txt, the cached pretraining instances (data/), checkpoints, TensorBoard
metrics and metrics.jsonl. Re-running with the same --workdir resumes from the latest checkpoint.
Fine-tune the result with train/bert_wwm_finetune.py --config.init.workdir=<workdir>.
"""
from jaxmodels.projects.bert_wwm import pretrain
from jaxmodels.training import launch

APPLY_HINT = ("out = model.apply(variables, input_ids, token_type_ids, attention_mask)  "
              "# out['mlm_logits']; tokenizer: jaxmodels.text.tokenizers.WordPieceTokenizer.from_file('<workdir>/vocab.txt')")

if __name__ == "__main__":
    launch.main(pretrain.train_and_evaluate, config_help="configs/bert_wwm_pretrain.py:<variant>",
                apply_hint=APPLY_HINT)
