"""Build the masked-LM head for the shared encoder, continuing from a pretrained one when there is one.

The head comes from `AutoModelForMaskedLM.from_pretrained(<the encoder's checkpoint>)`: for
a checkpoint with an MLM head (bert-base-uncased, roberta-base, an mtadv ALUM run's best/)
its trained weights are kept; for one without (the MiniLM package is a bare BertModel)
transformers initializes the missing head weights, and we log that it did. The wrapper's
base model is then replaced by the shared encoder, and the output embedding is tied to the
encoder's input embedding when the config says so (as the original model does).
"""

from __future__ import annotations

import logging

import torch
from torch import nn
from transformers import AutoModelForMaskedLM, PreTrainedModel

from mtadv.errors import UserError
from mtadv.heads import MaskedLMHead

log = logging.getLogger(__name__)


def build_masked_lm_head(encoder: PreTrainedModel) -> MaskedLMHead:
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
