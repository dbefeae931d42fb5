"""MultiTaskModel: one shared Hugging Face encoder, one head per task (fairseq style).

Keyword arguments only: `model(batch, task=..., inputs_embeds=None)`. `model.embed(batch)`
returns the *word* embeddings, the tensor HF accepts as `inputs_embeds`; adversarial methods
perturb that tensor, so position/type embeddings and LayerNorm are applied exactly once.
"""

from __future__ import annotations

from torch import Tensor, nn
from transformers import PreTrainedModel

from mtadv.taskdef import TaskDef
from mtadv.tasks import HEADS

ENCODER_INPUTS = ("attention_mask", "token_type_ids")


class MultiTaskModel(nn.Module):
    def __init__(self, encoder: PreTrainedModel, tasks: dict[str, TaskDef], head_dropout: float = 0.1) -> None:
        super().__init__()
        self.encoder = encoder
        self.heads = nn.ModuleDict()
        self.task_to_head: dict[str, str] = {}
        self.head_types: dict[str, str] = {}  # head name -> head registry name, for checkpoints
        for t in tasks.values():
            self.add_task(t, head_dropout)

    def embed(self, batch: dict[str, Tensor]) -> Tensor:
        """Word embeddings of the batch, (B, T, H); differentiable w.r.t. the embedding matrix."""
        return self.encoder.get_input_embeddings()(batch["input_ids"])

    def forward(self, batch: dict[str, Tensor], *, task: str, inputs_embeds: Tensor | None = None) -> Tensor:
        inputs = {k: batch[k] for k in ENCODER_INPUTS if k in batch}
        if inputs_embeds is None:
            inputs["input_ids"] = batch["input_ids"]
        else:
            inputs["inputs_embeds"] = inputs_embeds  # (B, T, H), perturbed word embeddings
        hidden = self.encoder(**inputs, return_dict=True).last_hidden_state  # (B, T, H)
        return self.heads[self.task_to_head[task]](hidden, batch)

    def pretrained_model(self) -> PreTrainedModel:
        """What checkpoints save in HF format: a head's *ForMaskedLM wrapper around the shared
        encoder when there is one (so AutoModelForMaskedLM loads the checkpoint), else the encoder."""
        wrappers = [h.hf_model for h in self.heads.values() if getattr(h, "hf_model", None) is not None]
        return wrappers[0] if wrappers else self.encoder

    def add_task(self, task: TaskDef, head_dropout: float = 0.1) -> None:
        """Register a task (e.g. one only predicted, like ax) that reuses or adds a head."""
        self.task_to_head[task.name] = task.head
        if task.head not in self.heads:
            builder = HEADS.get(task.task_type.head)
            hidden = self.encoder.config.hidden_size
            self.heads[task.head] = builder(
                hidden_size=hidden, num_outputs=task.num_outputs, dropout=head_dropout, encoder=self.encoder
            )
            self.head_types[task.head] = task.task_type.head
