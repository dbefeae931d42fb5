"""The masked-LM task type: corpus -> packed blocks -> masked batches -> the MLM head -> perplexity.

Training blocks are masked dynamically by the collator (new masks each epoch). Held-out blocks
(a dev split, or --mlm_holdout of the train passages) are masked ONCE, with a fixed seed, when
the split is built, and cached: every evaluation of every run scores the same masked tokens,
so perplexities are comparable between runs, seeds and methods (same corpus, --max_seq_len,
--mlm_probability and --mlm_whole_word).

Metrics over the masked tokens: `loss` (mean cross-entropy, nats), `perplexity` = exp(loss),
`accuracy` (top-1, %). Lower loss and perplexity are better (the type's `lower_is_better`).

The head is a transformers *ForMaskedLM model's head on the shared encoder, continuing from a
pretrained one when there is one: it comes from `AutoModelForMaskedLM.from_pretrained(<the
encoder's checkpoint>)`. For a checkpoint with an MLM head (bert-base-uncased, roberta-base, an
mtadv ALUM run's best/) its trained weights are kept; for one without (the MiniLM package is a bare
BertModel) transformers initializes the missing head weights, and we log that it did. The wrapper's
base model is then replaced by the shared encoder, and the output embedding is tied to the
encoder's input embedding when the config says so (as the original model does).
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Iterator
from typing import TYPE_CHECKING

import datasets
import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm
from transformers import PreTrainedTokenizerBase

from mtadv import distributed
from mtadv.data_utils.corpus import HOLDOUT, pack_corpus, read_corpus
from mtadv.data_utils.mlm_collate import MODEL_INPUTS, MaskedBlockCollator, MLMCollator
from mtadv.data_utils.readers import split_path
from mtadv.data_utils.tokenize import TokenizedSplit
from mtadv.errors import ConfigError, UserError
from mtadv.evaluate import Predictions
from mtadv.taskdef import TaskDef, TaskType
from mtadv.tasks.base import EvalRequest, TaskPipeline, register

if TYPE_CHECKING:  # annotations only (mtadv.config sits above this layer)
    from transformers import PreTrainedModel

    from mtadv.config import RunConfig

log = logging.getLogger(__name__)
EVAL_MASK_SEED = 1234  # fixed: held-out masks never depend on --seed
EVAL_MASK_BATCH = 256  # blocks masked together when the held-out split is built
METRICS = ("perplexity", "loss", "accuracy")  # over the masked tokens of the held-out split


# ---------------------------------------------------------------- head
class MaskedLMHead(nn.Module):
    """A transformers *ForMaskedLM head on the shared encoder: (B, T, H) -> (N, V) logits.

    The head modules are the *ForMaskedLM model's children other than its base model (BERT:
    `cls`; RoBERTa: `lm_head`; DistilBERT: vocab_transform ... vocab_projector), applied in
    order. With `mlm_labels` (B, T) in the batch, only the N masked positions (label != -100)
    are scored, so the task loss and ALUM's divergence compare (N, V) logits; without, all
    positions are: (B, T, V). `hf_model` is the *ForMaskedLM wrapper sharing the encoder and
    these modules (not a submodule, so nothing is registered twice); checkpoints save it so
    `AutoModelForMaskedLM` loads them.
    """

    def __init__(self, hf_model: nn.Module, parts: dict[str, nn.Module], vocab_size: int) -> None:
        super().__init__()
        for name, module in parts.items():
            self.add_module(name, module)
        self.order = list(parts)
        self.num_outputs = vocab_size
        object.__setattr__(self, "hf_model", hf_model)  # plain attribute: see the docstring

    def forward(self, hidden: Tensor, batch: dict[str, Tensor]) -> Tensor:
        labels = batch.get("mlm_labels")
        x = hidden if labels is None else hidden[labels != -100]  # (N, H) at masked positions
        for name in self.order:
            x = getattr(self, name)(x)
        return x  # (N, V) or (B, T, V)


def masked_lm_head(encoder: PreTrainedModel, **_) -> MaskedLMHead:
    hf_model = _masked_lm_model(encoder)
    prefix = hf_model.base_model_prefix
    setattr(hf_model, prefix, encoder)  # the wrapper now runs (and saves) the shared encoder
    if getattr(hf_model.config, "tie_word_embeddings", True) and hf_model.get_output_embeddings() is not None:
        hf_model.get_output_embeddings().weight = encoder.get_input_embeddings().weight
    parts = {
        name: module
        for name, module in hf_model.named_children()
        if name != prefix and not isinstance(module, nn.modules.loss._Loss)
    }
    head = MaskedLMHead(hf_model, parts, encoder.config.vocab_size)
    _check_output_width(head, encoder)
    return head


def _masked_lm_model(encoder: PreTrainedModel) -> PreTrainedModel:
    """The *ForMaskedLM model of the encoder's checkpoint, or a fresh one from its config."""
    from transformers import AutoModelForMaskedLM  # transformers' Auto classes, loaded on demand

    path = getattr(encoder, "name_or_path", "") or ""
    if path:
        try:
            model, info = AutoModelForMaskedLM.from_pretrained(path, output_loading_info=True)
        except (OSError, ValueError) as e:
            raise UserError(f"{path}: cannot build a masked-LM head for this encoder ({e})") from None
        fresh = sorted(k for k in info["missing_keys"] if not k.startswith(model.base_model_prefix + "."))
        if fresh:
            log.warning("%s has no pretrained MLM head: initialized %d head tensor(s) fresh", path, len(fresh))
        else:
            log.info("%s: continuing from its pretrained MLM head", path)
        return model
    try:
        model = AutoModelForMaskedLM.from_config(encoder.config)
    except ValueError as e:
        raise UserError(f"encoder type {encoder.config.model_type!r} has no masked-LM head ({e})") from None
    log.warning("encoder has no checkpoint path: MLM head initialized fresh")
    return model


def _check_output_width(head: MaskedLMHead, encoder: PreTrainedModel) -> None:
    """The children-in-order rule fits BERT/RoBERTa/ELECTRA/DistilBERT-style heads; fail loudly otherwise."""
    with torch.no_grad():
        probe = head(torch.zeros(1, encoder.config.hidden_size), {})
    if probe.shape[-1] != encoder.config.vocab_size:
        raise UserError(
            f"the {type(head.hf_model).__name__} head maps hidden states to width {probe.shape[-1]}, not the "
            f"vocabulary ({encoder.config.vocab_size}); this architecture's MLM head is not supported"
        )


# ---------------------------------------------------------------- pipeline: read, tokenize, collate
def read(task: TaskDef, split: str, data_dir: str, cfg: RunConfig) -> datasets.Dataset:
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


def tokenize(
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


def collator(task: TaskDef, tokenizer: PreTrainedTokenizerBase, cfg: RunConfig) -> MLMCollator:
    return MLMCollator(tokenizer, cfg.mlm.mlm_probability, cfg.mlm.mlm_whole_word, cfg.train.seed)


# ---------------------------------------------------------------- pipeline: evaluate, predict
def _masked_logits(
    model: nn.Module, task: TaskDef, split: TokenizedSplit, req: EvalRequest
) -> Iterator[tuple[dict[str, Tensor], Tensor, Tensor]]:
    """(batch, logits (N, V) at its masked positions, block index (N,) of each) over this rank's shard
    of a masked held-out split, in eval mode (restored after)."""
    was_training = model.training
    model.eval()
    shard = distributed.shard_split(split, req.rank, req.world_size).data
    blocks = torch.tensor(shard["example_idx"] if "example_idx" in shard.column_names else range(len(shard)))
    cols = [c for c in (*MODEL_INPUTS, "mlm_labels") if c in shard.column_names]
    loader = DataLoader(shard.select_columns(cols), batch_size=req.batch_size, collate_fn=MaskedBlockCollator())
    try:
        for i, batch in enumerate(
            tqdm(loader, desc=f"evaluate {task.name}", leave=False, disable=not req.show_progress)
        ):
            batch = {k: v.to(req.device) for k, v in batch.items()}
            with torch.autocast(req.device.type, dtype=req.autocast_dtype, enabled=req.autocast_dtype is not None):
                logits = model(batch, task=task.name).float()  # (N, V) at the masked positions
            rows = (batch["mlm_labels"] != -100).nonzero()[:, 0].cpu()  # (N,) row in the batch, row-major
            yield batch, logits, blocks[i * req.batch_size + rows]
    finally:
        model.train(was_training)


@torch.no_grad()
def evaluate(model: nn.Module, task: TaskDef, split: TokenizedSplit, req: EvalRequest) -> dict[str, float]:
    """Token-weighted cross-entropy, perplexity and top-1 accuracy over the split's masked tokens."""
    nll, correct, n = 0.0, 0, 0
    for batch, logits, _ in _masked_logits(model, task, split, req):
        nll += F.cross_entropy(logits, batch["labels"], reduction="sum").item()
        correct += (logits.argmax(-1) == batch["labels"]).sum().item()
        n += batch["labels"].numel()
    nll, correct, n = _sum_over_ranks(nll, correct, n)
    if n == 0:
        raise ConfigError("the held-out split has no masked tokens; add text or raise --mlm_holdout", task=task.name)
    loss = nll / n
    values = {"loss": loss, "perplexity": math.exp(min(loss, 700.0)), "accuracy": 100.0 * correct / n}
    return {m: values[m] for m in task.metrics}


@torch.no_grad()
def predict(model: nn.Module, task: TaskDef, split: TokenizedSplit, req: EvalRequest) -> Predictions:
    """The top-1 token at every masked position: example_idx (N,) the block it is in, outputs (N,) the
    predicted token ids, labels (N,) the masked tokens' ids; blocks in order, on every rank."""
    idx, outs, labels = [], [], []
    for batch, logits, blocks in _masked_logits(model, task, split, req):
        idx.append(blocks.numpy())
        outs.append(logits.argmax(-1).cpu().numpy())
        labels.append(batch["labels"].cpu().numpy())
    if not idx:
        empty = np.zeros(0, dtype=np.int64)
        return distributed.gather_predictions(Predictions(empty, empty, empty))
    return distributed.gather_predictions(
        Predictions(np.concatenate(idx), np.concatenate(outs), np.concatenate(labels))
    )


def _sum_over_ranks(*values: float) -> list[float]:
    if not distributed.is_distributed():
        return list(values)
    t = torch.tensor(values, dtype=torch.float64, device="cuda" if dist.get_backend() == "nccl" else "cpu")
    dist.all_reduce(t)
    return t.tolist()


register(
    # Masked-LM on an unlabeled corpus (ALUM's pretraining task): metrics over the masked tokens.
    TaskType(
        "mlm",
        "mlm",
        None,
        "ce",
        "sym_kl",
        METRICS,
        lambda: METRICS,
        holdout_dev=True,
        lower_is_better=("perplexity", "loss"),
    ),
    TaskPipeline(read=read, tokenize=tokenize, collator=collator, evaluate=evaluate, predict=predict),
    masked_lm_head,
)
