"""The masked-LM task type's pipeline: corpus -> packed blocks -> masked batches -> perplexity.

Training blocks are masked dynamically by the collator (new masks each epoch). Held-out blocks
(a dev split, or --mlm_holdout of the train passages) are masked ONCE, with a fixed seed, when
the split is built, and cached: every evaluation of every run scores the same masked tokens,
so perplexities are comparable between runs, seeds and methods (same corpus, --max_seq_len,
--mlm_probability and --mlm_whole_word).

Metrics over the masked tokens: `loss` (mean cross-entropy, nats), `perplexity` = exp(loss),
`accuracy` (top-1, %). Lower loss and perplexity are better (mtadv.trainer.LOWER_IS_BETTER).
"""

from __future__ import annotations

import math
import os

import datasets
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm
from transformers import PreTrainedTokenizerBase

from mtadv import distributed
from mtadv.config import RunConfig
from mtadv.data_utils.corpus import HOLDOUT, pack_corpus, read_corpus
from mtadv.data_utils.mlm_collate import MODEL_INPUTS, MaskedBlockCollator, MLMCollator
from mtadv.data_utils.readers import split_path
from mtadv.data_utils.tokenize import TokenizedSplit
from mtadv.errors import ConfigError
from mtadv.pipelines import PIPELINES, EvalRequest, TaskPipeline
from mtadv.taskdef import TaskDef

EVAL_MASK_SEED = 1234  # fixed: held-out masks never depend on --seed
EVAL_MASK_BATCH = 256  # blocks masked together when the held-out split is built


def _read(task: TaskDef, split: str, data_dir: str, cfg: RunConfig) -> datasets.Dataset:
    return read_corpus(task, split, data_dir, cfg.mlm.mlm_holdout)


def _source_key(task: TaskDef, split: str, cfg: RunConfig) -> tuple:
    """Identity of a split's text for the cache: file (path, size, mtime) or hub name, and how it is cut."""
    s = task.splits[split]
    src = task.splits["train"] if s.format == HOLDOUT else s
    if src.format == "hub":
        ident: tuple = (src.hub, src.subset, src.split)
    else:
        path = split_path(src, cfg.train.data_dir)
        st = os.stat(path)
        ident = (os.path.abspath(path), st.st_size, st.st_mtime_ns)
    holdout = cfg.mlm.mlm_holdout if any(x.format == HOLDOUT for x in task.splits.values()) else 0.0
    return (ident, split, s.format, src.passages, src.columns, holdout)


def _tokenize(
    raw: datasets.Dataset, task: TaskDef, split: str, tokenizer: PreTrainedTokenizerBase, cfg: RunConfig, cache_dir: str
) -> TokenizedSplit:
    key = _source_key(task, split, cfg)
    try:
        blocks = pack_corpus(raw, tokenizer, cfg.train.max_seq_len, cache_dir, key, with_offsets=cfg.mlm.mlm_whole_word)
    except ValueError as e:
        where = task.splits["train"] if task.splits[split].format == HOLDOUT else task.splits[split]
        raise ConfigError(
            f"{e}; add text, lower --max_seq_len, or (held-out split) raise --mlm_holdout",
            file=where.hub or where.path,
            task=task.name,
            field=f"splits.{split}",
        ) from None
    if task.splits[split].is_train:
        return blocks
    return _mask_once(blocks, tokenizer, cfg, cache_dir, key)


def _mask_once(
    blocks: TokenizedSplit, tokenizer: PreTrainedTokenizerBase, cfg: RunConfig, cache_dir: str, key: tuple
) -> TokenizedSplit:
    """Mask the held-out blocks with EVAL_MASK_SEED and keep the result (cached)."""
    m = cfg.mlm
    collator = MLMCollator(tokenizer, m.mlm_probability, m.mlm_whole_word, EVAL_MASK_SEED)

    def mask(batch: dict) -> dict:
        examples = [dict(zip(batch, values)) for values in zip(*batch.values())]
        out = collator(examples)
        return {k: out[k].tolist() for k in (*MODEL_INPUTS, "mlm_labels") if k in out}

    fingerprint = datasets.fingerprint.Hasher.hash((key, tokenizer, cfg.train.max_seq_len, m, EVAL_MASK_SEED))
    data = blocks.data.map(
        mask,
        batched=True,
        batch_size=EVAL_MASK_BATCH,
        remove_columns=[c for c in ("offset_mapping",) if c in blocks.data.column_names],
        cache_file_name=os.path.join(cache_dir, f"corpus-masked-{fingerprint}.arrow"),
        desc="masking held-out blocks",
    )
    return TokenizedSplit(data=data, raw=blocks.raw, n_truncated=0)


def _collator(task: TaskDef, tokenizer: PreTrainedTokenizerBase, cfg: RunConfig) -> MLMCollator:
    return MLMCollator(tokenizer, cfg.mlm.mlm_probability, cfg.mlm.mlm_whole_word, cfg.train.seed)


@torch.no_grad()
def evaluate_mlm(model: nn.Module, task: TaskDef, split: TokenizedSplit, req: EvalRequest) -> dict[str, float]:
    """Token-weighted cross-entropy, perplexity and top-1 accuracy over the split's masked tokens."""
    was_training = model.training
    model.eval()
    cols = [c for c in (*MODEL_INPUTS, "mlm_labels") if c in split.data.column_names]
    shard = distributed.shard_split(split, req.rank, req.world_size).data.select_columns(cols)
    loader = DataLoader(shard, batch_size=req.batch_size, collate_fn=MaskedBlockCollator())
    nll, correct, n = 0.0, 0, 0
    for batch in tqdm(loader, desc=f"evaluate {task.name}", leave=False, disable=not req.show_progress):
        batch = {k: v.to(req.device) for k, v in batch.items()}
        with torch.autocast(req.device.type, dtype=req.autocast_dtype, enabled=req.autocast_dtype is not None):
            logits = model(batch, task=task.name).float()  # (N, V) at the masked positions
        nll += F.cross_entropy(logits, batch["labels"], reduction="sum").item()
        correct += (logits.argmax(-1) == batch["labels"]).sum().item()
        n += batch["labels"].numel()
    model.train(was_training)
    nll, correct, n = _sum_over_ranks(nll, correct, n)
    if n == 0:
        raise ConfigError("the held-out split has no masked tokens; add text or raise --mlm_holdout", task=task.name)
    loss = nll / n
    values = {"loss": loss, "perplexity": math.exp(min(loss, 700.0)), "accuracy": 100.0 * correct / n}
    return {m: values[m] for m in task.metrics}


def _sum_over_ranks(*values: float) -> list[float]:
    if not distributed.is_distributed():
        return list(values)
    t = torch.tensor(values, dtype=torch.float64, device="cuda" if dist.get_backend() == "nccl" else "cpu")
    dist.all_reduce(t)
    return t.tolist()


PIPELINES.register("mlm")(TaskPipeline(read=_read, tokenize=_tokenize, collator=_collator, evaluate=evaluate_mlm))
