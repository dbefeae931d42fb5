"""AdversarialTrainer: mtadv's adversarial regularizers inside your own `transformers.Trainer` script.

    trainer = AdversarialTrainer(
        model=AutoModelForSequenceClassification.from_pretrained(path, num_labels=2),
        args=TrainingArguments(output_dir="runs/x", ...),
        train_dataset=train, eval_dataset=dev, processing_class=tokenizer,
        adv="smart", adv_eps=1e-2, bregman_mu=1.0,     # any method of mtadv.list_methods() and its settings
    )
    trainer.train()

The methods are mtadv's own classes (`Regularizer.loss(StepContext)`), not copies. They expect the
interface of mtadv's MultiTaskModel (`model(batch, task=..., inputs_embeds=...)`, `embed(batch)`,
`.encoder`); `TaskModel` gives it to one Hugging Face *ForSequenceClassification or
*ForTokenClassification model. One micro-step, as in mtadv.trainer's `_micro_step`:

    clean forward (through the Trainer's wrapped model: DDP, autocast) -> task loss
    + every active regularizer's term (extra forwards through the unwrapped model)
    -> returned to the Trainer, which does the single backward, accumulation, clipping and the step
    after each optimizer step that was not skipped: every regularizer's on_optimizer_step (EMA teacher, FreeAT)

Token classification: the methods see the logits at labeled positions only, (N, C) (label -100 is
ignored), and `labels` (N,). Regression (num_labels == 1): scores (B,) with mse/mse.
Regularizer state (the EMA teacher, FreeAT's δ, counters) is saved in every checkpoint-<step>/
(ADV_STATE_FILE) and restored by `train(resume_from_checkpoint=...)`.
FreeAT replays each batch m times with an optimizer step each; the Trainer takes one step per
batch, so here FreeAT runs with m = 1 (δ still carries over between batches) and
`freeat_replays > 1` is an error (mtadv-train supports it).
"""

from __future__ import annotations

import difflib
import functools
import inspect
import json
import os
from collections.abc import Callable
from dataclasses import fields
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor, nn
from transformers import PreTrainedModel, Trainer, TrainerCallback
from transformers.models.auto.modeling_auto import (
    MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES,
    MODEL_FOR_TOKEN_CLASSIFICATION_MAPPING_NAMES,
)
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from mtadv.adversarial import ADV_METHODS, Regularizer, StepContext, build_regularizers
from mtadv.adversarial.perturb import RngState
from mtadv.adversarial.spaces import get_space, task_space
from mtadv.config import AdvConfig, RunConfig, TeacherConfig, check_ranges, coerce, section_fields, section_types
from mtadv.errors import ConfigError
from mtadv.losses import TASK_LOSSES
from mtadv.taskdef import TASK_TYPES, TaskDef

TASK = "task"  # the name of the single task the regularizers see
ADV_STATE_FILE = "mtadv_adv_state.safetensors"  # in each checkpoint-<step>/: every regularizer's state_dict()
POSITIONS = "mtadv_label_positions"  # batch key: (B, T) bool, the labeled tokens of a token-level task
TEACHER_KWARGS = {f.name for f in fields(TeacherConfig)} - {"eval_with_teacher"}


def adv_kwargs() -> set[str]:
    """AdvConfig's settings as keywords: its fields and every registered method's own settings (read from
    the registry on each call, so a method registered after this import is included)."""
    return {f.name for f in section_fields(AdvConfig)} - {"adv"}


def __getattr__(name: str) -> Any:
    if name == "ADV_KWARGS":  # the former constant; computed, since methods may register their settings later
        return adv_kwargs()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class TaskModel(nn.Module):
    """One HF classification model with MultiTaskModel's interface, for the regularizers.

    Its modules are registered once each: `encoder` (the HF base model, e.g. BertModel), so parameter names
    read `encoder.encoder.layer.N...` as in MultiTaskModel (AWP's default weight pattern), and `head` (the
    HF model's other children: pooler dropout, classifier). The HF model itself is kept unregistered: a
    module reachable under two names breaks torch.func.functional_call's restore (AWP)."""

    def __init__(self, model: PreTrainedModel, token_level: bool) -> None:
        super().__init__()
        self.encoder = model.base_model
        self.head = nn.ModuleDict({n: m for n, m in model.named_children() if m is not model.base_model})
        object.__setattr__(self, "hf", model)  # not a submodule (see above); deepcopy still maps it to the copy
        self.token_level = token_level
        own = {id(t) for t in [*self.parameters(), *self.buffers()]}
        if any(id(t) not in own for t in [*model.parameters(), *model.buffers()]):
            raise TypeError(f"{type(model).__name__} has weights outside its base model and child modules")

    def train(self, mode: bool = True) -> TaskModel:
        super().train(mode)
        self.hf.training = mode
        return self

    def embed(self, batch: dict[str, Tensor]) -> Tensor:
        """(B, T, H) word embeddings, the tensor HF takes as `inputs_embeds`."""
        return self.hf.get_input_embeddings()(batch["input_ids"])

    def forward(
        self,
        batch: dict[str, Tensor],
        *,
        task: str = TASK,
        inputs_embeds: Tensor | None = None,
        via: Callable[..., Any] | None = None,
    ) -> Tensor:
        """(B, C) logits, (B,) scores, or for a token-level task (N, C) logits at the labeled positions.

        via: the Trainer's wrapped model for the clean forward (DDP, accelerate's autocast); extra forwards
        call the HF model's own forward (accelerate's unpatched one), so a method's `autocast(enabled=False)` holds."""
        inputs = {k: v for k, v in batch.items() if k not in ("labels", POSITIONS)}
        if inputs_embeds is not None:
            inputs.pop("input_ids", None)
            inputs["inputs_embeds"] = inputs_embeds  # (B, T, H)
        call = via if via is not None else getattr(self.hf, "_original_forward", self.hf)
        logits = call(**inputs, return_dict=True).logits  # (B, C) or (B, T, C)
        if self.token_level:
            return logits[batch[POSITIONS]]  # (N, C)
        return logits.squeeze(-1) if logits.shape[-1] == 1 else logits


def task_def_for(model: PreTrainedModel) -> tuple[TaskDef, bool]:
    """The single task a HF model defines (classification, or regression when num_labels == 1) and
    whether it is token-level."""
    name = type(model).__name__
    token_level = name in set(MODEL_FOR_TOKEN_CLASSIFICATION_MAPPING_NAMES.values())
    if not token_level and name not in set(MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES.values()):
        raise TypeError(
            f"AdversarialTrainer trains AutoModelForSequenceClassification and AutoModelForTokenClassification "
            f"models; got {name}"
        )
    config = model.config
    if getattr(config, "problem_type", None) == "multi_label_classification":
        raise ValueError("AdversarialTrainer: multi_label_classification models are not supported")
    n = config.num_labels
    regression = n == 1 or getattr(config, "problem_type", None) == "regression"
    if regression and token_level:
        raise ValueError("AdversarialTrainer: token-level regression (num_labels == 1) is not supported")
    ttype = TASK_TYPES.get("regression" if regression else "classification")
    labels = None if regression else tuple(str(i) for i in range(n))
    task = TaskDef(TASK, ttype.name, {}, ttype.metrics, ttype.loss, ttype.adv_loss, labels=labels)
    return task, token_level


def adversarial_settings(adv: str, settings: dict[str, Any]) -> RunConfig:
    """The RunConfig of a method and its settings (AdvConfig and TeacherConfig fields), type- and range-checked
    (ValueError naming the setting); unset fields take the method's own defaults (AdvConfig.__init__)."""
    try:
        return _settings(adv, settings)
    except (ConfigError, KeyError) as e:
        raise ValueError(f"AdversarialTrainer: {e.args[0] if isinstance(e, KeyError) else e}") from None


def _settings(adv: str, settings: dict[str, Any]) -> RunConfig:
    if adv != "none":
        ADV_METHODS.get(adv)  # unknown names fail listing the known ones
    hints = {**section_types(AdvConfig), **section_types(TeacherConfig)}
    typed = {k: coerce(v, hints[k], k) for k, v in settings.items()}
    for f in [*section_fields(AdvConfig), *section_fields(TeacherConfig)]:
        choices = f.metadata.get("choices")
        if f.name in typed and choices and typed[f.name] not in choices:
            raise ConfigError(f"{typed[f.name]!r} is not one of {list(choices)}", field=f.name)
    if adv == "freeat":  # one optimizer step per batch in the Trainer: m = 1 unless set (then refused below)
        typed.setdefault("freeat_replays", 1)
    teacher = TeacherConfig(**{k: v for k, v in typed.items() if k in TEACHER_KWARGS})
    method = AdvConfig(adv=adv, **{k: v for k, v in typed.items() if k in adv_kwargs()})
    for section in (method, teacher):
        check_ranges(section, prefix="")
    return RunConfig(adv=method, teacher=teacher)


def _unknown_keywords(kwargs: dict[str, Any]) -> None:
    known = set(inspect.signature(Trainer.__init__).parameters) - {"self"}
    unknown = sorted(set(kwargs) - known)
    if not unknown:
        return
    ours = sorted(adv_kwargs() | TEACHER_KWARGS | {"adv"})
    close = [m[0] for u in unknown if (m := difflib.get_close_matches(u, [*ours, *known], n=1))]
    hint = f" (did you mean {', '.join(close)}?)" if close else ""
    raise TypeError(
        f"AdversarialTrainer: unknown keyword argument(s) {unknown}{hint}; it takes transformers.Trainer's "
        f"arguments and these mtadv settings: {', '.join(ours)}"
    )


class _OptimizerStepHook(TrainerCallback):
    """After each optimizer step: the regularizers' on_optimizer_step (EMA update, FreeAT's ascent)."""

    def __init__(self, trainer: AdversarialTrainer) -> None:
        self.trainer = trainer

    def on_optimizer_step(self, args, state, control, **kwargs):
        self.trainer.after_optimizer_step()


class AdversarialTrainer(Trainer):
    """transformers.Trainer with an mtadv adversarial regularizer (`adv=`, its settings as keywords).

    adv: a method of mtadv.list_methods() or "none"; "bregman" is the EMA teacher alone (μ = 1), which any
    method adds with bregman_mu > 0.
    Settings: AdvConfig fields (adv_eps, adv_lr, adv_steps, ..., bregman_mu) and TeacherConfig fields
    (bregman_beta, bregman_start_step, ...); unset ones take the method's own defaults.
    """

    loss_is_scaled_for_ga = False  # compute_loss returns a per-batch mean: the Trainer divides it by grad_accum

    def __init__(self, *args: Any, adv: str = "none", **kwargs: Any) -> None:
        settings = {k: kwargs.pop(k) for k in list(kwargs) if k in adv_kwargs() | TEACHER_KWARGS}
        _unknown_keywords(kwargs)
        self.run_config = adversarial_settings(adv, settings)
        super().__init__(*args, **kwargs)
        if self.args.label_smoothing_factor or self.compute_loss_func is not None:
            raise ValueError(
                "AdversarialTrainer computes the task loss itself: unset label_smoothing_factor and compute_loss_func"
            )
        self.task_def, self.token_level = task_def_for(self.accelerator.unwrap_model(self.model))
        self.regularizers: list[Regularizer] = build_regularizers(self.run_config, {TASK: self.task_def})[TASK]
        replaying = [r.name for r in self.regularizers if r.replays > 1]
        if replaying:
            raise ValueError(
                f"AdversarialTrainer: {replaying} replay each batch with an optimizer step per replay, which "
                "transformers.Trainer cannot do; set freeat_replays=1 (the default here), or use mtadv-train"
            )
        self.space = get_space(task_space(self.regularizers))
        self.task_loss_fn = TASK_LOSSES.get(self.task_def.loss)
        self._net: TaskModel | None = None
        self._sums: dict[str, float] = {}
        self._counts: dict[str, int] = {}
        self.add_callback(_OptimizerStepHook(self))

    # ---------------------------------------------------------------- the step
    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if not (model.training and torch.is_grad_enabled()):  # evaluation and prediction: the model's own loss
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        net = self.task_model(model)
        batch = self._method_batch(inputs)
        with self.accelerator.autocast():
            loss, logits, logs = self._adversarial_loss(model, net, batch)
        for k, v in logs.items():
            self._sums[k], self._counts[k] = self._sums.get(k, 0.0) + v, self._counts.get(k, 0) + 1
        return (loss, {"logits": logits}) if return_outputs else loss

    def _adversarial_loss(
        self, model: nn.Module, net: TaskModel, batch: dict[str, Tensor]
    ) -> tuple[Tensor, Tensor, dict[str, float]]:
        """Clean forward, task loss and every active regularizer's term (mtadv.trainer's `_micro_step`)."""
        step, epoch = self.state.global_step, int(self.state.epoch or 0)
        rng = RngState.capture(self.args.device)  # the clean forward's dropout masks, for replay
        forward_model = functools.partial(net, via=model)  # the clean forward goes through DDP / autocast
        # embeds: (B, T, H) the tensor the methods perturb; logits: (B, C), (B,) or (N, C)
        embeds, logits, space_scale = self.space.clean_forward(forward_model, net, batch, TASK)
        task_loss = self.task_loss_fn(logits, batch["labels"])
        active = [r for r in self.regularizers if r.active(step, epoch)]
        replaced = any(r.replaces_task_loss for r in active)  # e.g. PGD, FreeAT: train on the adversarial loss
        loss = torch.zeros_like(task_loss) if replaced else task_loss
        ctx = StepContext(net, self.task_def, batch, embeds, logits, task_loss, rng, step, epoch)
        ctx.space, ctx.space_scale = self.space.name, space_scale
        ctx.grad_scale = self._grad_scale()  # inner ascent gradients are scaled like the outer loss under fp16
        logs = {"task_loss": task_loss.item()}
        for reg in active:
            reg_loss, reg_logs = reg.loss(ctx)
            loss = loss + reg_loss
            logs.update(reg_logs)
        return loss, logits, logs

    def task_model(self, model: nn.Module | None = None) -> TaskModel:
        """The regularizers' view of the (unwrapped) model; one instance, so the teacher tracks it."""
        hf = self.accelerator.unwrap_model(model if model is not None else self.model)
        if self._net is None or self._net.hf is not hf:
            self._net = TaskModel(hf, self.token_level)
        self._net.training = hf.training  # only the flag: the teacher copies it for dropout replay
        return self._net

    def _method_batch(self, inputs: dict[str, Any]) -> dict[str, Tensor]:
        """The batch as the methods see it: an attention mask, and labels (N,) at the labeled tokens."""
        batch = {k: v for k, v in inputs.items() if isinstance(v, Tensor)}
        if "attention_mask" not in batch:
            batch["attention_mask"] = torch.ones_like(batch["input_ids"])
        labels = batch["labels"]
        if self.token_level:
            batch[POSITIONS] = labels != -100  # (B, T)
            batch["labels"] = labels[batch[POSITIONS]]  # (N,)
        elif self.task_def.type == "regression":
            batch["labels"] = labels.view(-1).float()  # (B,)
        return batch

    def _grad_scale(self) -> float:
        scaler = getattr(self.accelerator, "scaler", None)
        return float(scaler.get_scale()) if scaler is not None and scaler.is_enabled() else 1.0

    def unique_regularizers(self) -> list[Regularizer]:
        return list({id(r): r for r in self.regularizers}.values())

    def after_optimizer_step(self) -> None:
        """Every regularizer's hook, unless the step was skipped (an fp16 overflow)."""
        if self.accelerator.optimizer_step_was_skipped:
            return
        net = self.task_model()
        for reg in self.unique_regularizers():
            reg.on_optimizer_step(net)

    @property
    def teacher_model(self) -> PreTrainedModel | None:
        """The EMA teacher as a HF model (save_pretrained it, evaluate it), or None before it starts."""
        teacher = next((r.teacher for r in self.unique_regularizers() if r.teacher is not None), None)
        return None if teacher is None else teacher.hf

    # ---------------------------------------------------------------- logging
    def log(self, logs: dict[str, float], *args: Any, **kwargs: Any) -> None:
        """Training logs get the regularizers' scalars, averaged over the micro-steps since the last log."""
        if "loss" in logs and self._sums:
            logs = {**logs, **{k: v / self._counts[k] for k, v in self._sums.items()}}
            self._sums, self._counts = {}, {}
        super().log(logs, *args, **kwargs)

    # ---------------------------------------------------------------- checkpoints
    def _save_checkpoint(self, model, trial) -> None:
        super()._save_checkpoint(model, trial)
        if self.args.should_save:
            folder = f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}"
            save_adv_state(os.path.join(self._get_output_dir(trial=trial), folder), self.unique_regularizers())

    def _load_optimizer_and_scheduler(self, checkpoint) -> None:
        super()._load_optimizer_and_scheduler(checkpoint)  # called once per resume, whatever the backend
        if checkpoint is not None:
            load_adv_state(checkpoint, self.unique_regularizers())


def save_adv_state(directory: str, regularizers: list[Regularizer]) -> None:
    """Every regularizer's state_dict() in one safetensors file: tensors as tensors, the rest as JSON metadata."""
    tensors: dict[str, Tensor] = {}
    other: dict[str, dict[str, Any]] = {}
    for i, reg in enumerate(regularizers):
        for key, value in reg.state_dict().items():
            if isinstance(value, Tensor):
                tensors[f"{i}/{key}"] = value.detach().cpu().contiguous().clone()
            else:
                other.setdefault(str(i), {})[key] = value
    names = [r.name for r in regularizers]
    save_file(
        tensors,
        os.path.join(directory, ADV_STATE_FILE),
        metadata={"names": json.dumps(names), "other": json.dumps(other)},
    )


def load_adv_state(directory: str, regularizers: list[Regularizer]) -> None:
    """Restore what save_adv_state wrote; a checkpoint of other regularizers is an error."""
    path = os.path.join(directory, ADV_STATE_FILE)
    names = [r.name for r in regularizers]
    if not os.path.isfile(path):
        if names:
            raise ValueError(f"{directory} has no {ADV_STATE_FILE}: it was not written by an AdversarialTrainer")
        return
    from safetensors import safe_open

    with safe_open(path, "pt") as f:
        meta = f.metadata()
    if json.loads(meta["names"]) != names:
        raise ValueError(f"{path} holds the state of {json.loads(meta['names'])}, this trainer has {names}")
    tensors, other = load_file(path), json.loads(meta["other"])
    for i, reg in enumerate(regularizers):
        state = dict(other.get(str(i), {}))
        state.update({k.split("/", 1)[1]: v for k, v in tensors.items() if k.split("/", 1)[0] == str(i)})
        reg.load_state_dict(state)
