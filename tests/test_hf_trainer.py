"""mtadv.hf.AdversarialTrainer: every registered method inside transformers.Trainer, on tiny random models."""

from __future__ import annotations

import math
import random

import datasets
import pytest
import torch
from transformers import (
    BertConfig,
    BertForSequenceClassification,
    BertForTokenClassification,
    BertTokenizerFast,
    DataCollatorForTokenClassification,
    DataCollatorWithPadding,
    TrainingArguments,
)

from mtadv.adversarial import ADV_METHODS
from mtadv.hf import ADV_STATE_FILE, AdversarialTrainer

METHODS = ADV_METHODS.names()
KINDS = ("sequence", "token", "regression")


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """Tiny models: one intra-op thread is several times faster than many on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def tokenizer(tiny_encoder) -> BertTokenizerFast:
    return BertTokenizerFast.from_pretrained(tiny_encoder)


def tiny_model(kind: str, dropout: float = 0.1, seed: int = 0):
    config = BertConfig(
        vocab_size=400,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
        hidden_dropout_prob=dropout,
        attention_probs_dropout_prob=dropout,
        num_labels=1 if kind == "regression" else 3,
    )
    torch.manual_seed(seed)
    cls = BertForTokenClassification if kind == "token" else BertForSequenceClassification
    return cls(config)


def tiny_dataset(kind: str, n: int = 16, length: int | None = None, seed: int = 0) -> datasets.Dataset:
    """n random examples of 4..12 tokens (or exactly `length`); token labels -100 on [CLS]/[SEP] and every third token."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        t = length or rng.randint(4, 12)
        ids = [2] + [rng.randrange(5, 400) for _ in range(t - 2)] + [3]
        row = {"input_ids": ids, "attention_mask": [1] * t, "token_type_ids": [0] * t}
        if kind == "token":
            row["labels"] = [-100 if i in (0, t - 1) or i % 3 == 0 else rng.randrange(3) for i in range(t)]
        else:
            row["labels"] = rng.uniform(0, 5) if kind == "regression" else rng.randrange(3)
        rows.append(row)
    return datasets.Dataset.from_list(rows)


def make_trainer(tmp_path, tokenizer, kind="sequence", model=None, data=None, adv="none", **kw):
    settings = {k: kw.pop(k) for k in list(kw) if k.startswith(("adv_", "bregman_", "freeat_", "vat_", "freelb_"))}
    args = dict(
        output_dir=str(tmp_path / "out"),
        per_device_train_batch_size=4,
        max_steps=3,
        learning_rate=1e-3,
        logging_steps=1,
        save_strategy="no",
        report_to=[],
        use_cpu=True,
        seed=0,
        disable_tqdm=True,
    )
    args.update(kw)
    collator = DataCollatorForTokenClassification(tokenizer) if kind == "token" else DataCollatorWithPadding(tokenizer)
    return AdversarialTrainer(
        model=model if model is not None else tiny_model(kind),
        args=TrainingArguments(**args),
        train_dataset=data if data is not None else tiny_dataset(kind),
        data_collator=collator,
        adv=adv,
        **settings,
    )


def weights(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("method", METHODS)
def test_every_method_trains_with_finite_losses(method, kind, tmp_path, tokenizer):
    trainer = make_trainer(tmp_path, tokenizer, kind, adv=method)
    before = weights(trainer.model)
    trainer.train()
    logs = [h for h in trainer.state.log_history if "loss" in h]
    assert len(logs) == 3
    for h in logs:
        assert math.isfinite(h["loss"]) and math.isfinite(h["task_loss"]), h
        assert all(math.isfinite(v) for v in h.values() if isinstance(v, float)), h
    after = weights(trainer.model)
    assert any(not torch.equal(before[k], after[k]) for k in before)


@pytest.mark.parametrize("method", METHODS)
def test_weights_change_only_through_the_optimizer(method, tmp_path, tokenizer):
    """learning_rate 0: every method (AWP's weight perturbation included) and the EMA teacher leave the
    weights bit-identical."""
    trainer = make_trainer(tmp_path, tokenizer, adv=method, learning_rate=0.0, bregman_mu=1.0)
    before = weights(trainer.model)
    trainer.train()
    after = weights(trainer.model)
    assert all(torch.equal(before[k], after[k]) for k in before)
    teacher = trainer.teacher_model.state_dict()
    assert all(torch.equal(before[k], teacher[k]) for k in before)


@pytest.mark.parametrize("adv, settings", [("smart", {"bregman_mu": 1.0, "adv_eps": 1e-2}), ("freeat", {})])
def test_resume_is_exact(adv, settings, tmp_path, tokenizer):
    """4 steps saving at 2, then a fresh trainer resumed from checkpoint-2: the same weights as uninterrupted,
    and the same regularizer state (the EMA teacher's weights, FreeAT's δ)."""
    run = dict(max_steps=4, save_strategy="steps", save_steps=2, **settings)
    full = make_trainer(tmp_path / "a", tokenizer, adv=adv, **run)
    full.train()
    checkpoint = tmp_path / "a" / "out" / "checkpoint-2"
    assert (checkpoint / ADV_STATE_FILE).is_file()
    resumed = make_trainer(tmp_path / "b", tokenizer, adv=adv, **run)
    resumed.train(resume_from_checkpoint=str(checkpoint))
    expected, got = weights(full.model), weights(resumed.model)
    assert all(torch.equal(expected[k], got[k]) for k in expected)
    for r_full, r_resumed in zip(full.unique_regularizers(), resumed.unique_regularizers()):
        s_full, s_resumed = r_full.state_dict(), r_resumed.state_dict()
        assert s_full.keys() == s_resumed.keys()
        for k, v in s_full.items():
            assert torch.equal(v, s_resumed[k]) if isinstance(v, torch.Tensor) else v == s_resumed[k], k


def test_a_checkpoint_stores_the_student_and_the_teacher_once_each(tmp_path, tokenizer):
    """model.safetensors holds the student alone; the adv state holds one copy of the teacher's weights."""
    from safetensors.torch import load_file

    trainer = make_trainer(tmp_path, tokenizer, adv="smart", bregman_mu=1.0, save_strategy="steps", save_steps=3)
    trainer.train()
    checkpoint = tmp_path / "out" / "checkpoint-3"
    student = load_file(checkpoint / "model.safetensors")
    assert set(student) <= set(tiny_model("sequence").state_dict())  # a bare model's keys: no teacher copy
    adv = load_file(checkpoint / ADV_STATE_FILE)
    weight_keys = [k for k in adv if k.endswith("classifier.weight")]
    assert len(weight_keys) == 1, weight_keys  # one regularizer state, one teacher copy
    teacher = trainer.teacher_model.state_dict()["classifier.weight"]
    assert torch.equal(adv[weight_keys[0]], teacher)


def test_teacher_is_the_students_moving_average(tmp_path, tokenizer):
    trainer = make_trainer(tmp_path, tokenizer, adv="smart", bregman_mu=1.0)
    before = weights(trainer.model)
    trainer.train()
    student, teacher = weights(trainer.model), trainer.teacher_model.state_dict()
    name = "classifier.weight"
    assert not torch.equal(teacher[name], before[name]) and not torch.equal(teacher[name], student[name])
    assert all(math.isfinite(h["bregman_loss"]) for h in trainer.state.log_history if "loss" in h)


def test_accumulation_equals_the_doubled_batch(tmp_path, tokenizer):
    """Dropout 0, FGM (deterministic): grad_accum 2 × batch 2 takes the same step as batch 4."""
    data = tiny_dataset("sequence", n=8, length=10)
    updates = []
    for bs, accum in ((4, 1), (2, 2)):
        model = tiny_model("sequence", dropout=0.0)
        before = weights(model)
        trainer = make_trainer(
            tmp_path / f"{bs}", tokenizer, model=model, data=data, adv="fgm", max_steps=1, optim="sgd",
            learning_rate=1.0, max_grad_norm=0.0, per_device_train_batch_size=bs, gradient_accumulation_steps=accum,
        )  # fmt: skip
        trainer.train()
        after = weights(model)
        updates.append(torch.cat([(after[k] - before[k]).flatten() for k in before]))
    assert updates[0].norm() > 0
    assert (updates[0] - updates[1]).norm() <= 1e-5 * updates[0].norm()


def test_bf16_autocast_trains(tmp_path, tokenizer):
    trainer = make_trainer(tmp_path, tokenizer, adv="smart", bf16=True, bregman_mu=1.0)
    trainer.train()
    assert all(math.isfinite(h["adv_loss"]) for h in trainer.state.log_history if "loss" in h)


def test_unknown_keyword_lists_the_known_ones(tmp_path, tokenizer):
    with pytest.raises(TypeError, match=r"adv_epss.*did you mean adv_eps.*adv_init_mag"):
        make_trainer(tmp_path, tokenizer, adv="smart", adv_epss=1e-2)


def test_bad_settings_are_errors(tmp_path, tokenizer):
    with pytest.raises(ValueError, match="unknown adversarial method 'smrt'; known: .*smart"):
        make_trainer(tmp_path, tokenizer, adv="smrt")
    with pytest.raises(ValueError, match="adv_norm.*not one of"):
        make_trainer(tmp_path, tokenizer, adv="smart", adv_norm="l3")
    with pytest.raises(ValueError, match="adv_eps.*out of range"):
        make_trainer(tmp_path, tokenizer, adv="smart", adv_eps=-1.0)


def test_freeat_replays_are_refused(tmp_path, tokenizer):
    with pytest.raises(ValueError, match="freeat_replays=1"):
        make_trainer(tmp_path, tokenizer, adv="freeat", freeat_replays=2)
    assert make_trainer(tmp_path, tokenizer, adv="freeat").regularizers[0].replays == 1


def test_the_example_script_runs(tmp_path, tiny_encoder):
    """examples/hf_trainer_glue.py on the embedded MRPC sample, a tiny encoder, 2 steps, SMART with its teacher."""
    import importlib.util
    from pathlib import Path

    repo = Path(__file__).resolve().parent.parent
    spec = importlib.util.spec_from_file_location("hf_trainer_glue", repo / "examples" / "hf_trainer_glue.py")
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    mrpc = repo / "data" / "glue_sample" / "MRPC"
    example.main(
        ["--train", str(mrpc / "train.tsv"), "--dev", str(mrpc / "dev.tsv"), "--text_a", "#1 String",
         "--text_b", "#2 String", "--label", "Quality", "--model", str(tiny_encoder), "--max_steps", "2",
         "--batch_size", "4", "--adv", "smart", "--adv_eps", "1e-2", "--bregman_mu", "1",
         "--output_dir", str(tmp_path / "out")]
    )  # fmt: skip
    assert (tmp_path / "out" / "model.safetensors").is_file() and (tmp_path / "out" / "teacher").is_dir()


DDP_SCRIPT = """
import os, sys, torch
sys.path.insert(0, {tests!r})
torch.set_num_threads(1)
from pathlib import Path
from transformers import BertTokenizerFast
import test_hf_trainer as T

out = Path({out!r})
model = T.tiny_model("sequence", dropout=0.0)
before = T.weights(model)
trainer = T.make_trainer(
    out, BertTokenizerFast.from_pretrained({encoder!r}), model=model, data=T.tiny_dataset("sequence", n=4, length=10),
    adv="fgm", max_steps=1, optim="sgd", learning_rate=1.0, max_grad_norm=0.0, per_device_train_batch_size=2,
)
trainer.train()
after = T.weights(model)
if trainer.args.process_index == 0:
    assert trainer.args.world_size == 2, trainer.args.world_size
    torch.save(torch.cat([(after[k] - before[k]).flatten() for k in before]), out / "update.pt")
torch.distributed.destroy_process_group()
# The exit could still abort ('terminate called without an active exception', SIGABRT; 1 of 14 runs
# under load), likely because the Trainer's DDP wrapper still holds the gloo group, freed only during
# interpreter finalization, where gloo's threads race the shutdown. The work is saved: skip finalization.
sys.stdout.flush(); sys.stderr.flush()
os._exit(0)
"""


@pytest.mark.integration
def test_ddp_through_torchrun_takes_the_single_process_step(tmp_path, tokenizer, tiny_encoder):
    """2 processes × batch 2 (torchrun, gloo) == 1 process × batch 4: FGM's extra forward through the unwrapped
    model, the clean one through DDP, one backward."""
    import socket
    import subprocess
    import sys
    from pathlib import Path

    model = tiny_model("sequence", dropout=0.0)
    before = weights(model)
    make_trainer(
        tmp_path / "one", tokenizer, model=model, data=tiny_dataset("sequence", n=4, length=10), adv="fgm",
        max_steps=1, optim="sgd", learning_rate=1.0, max_grad_norm=0.0, per_device_train_batch_size=4,
    ).train()  # fmt: skip
    after = weights(model)
    single = torch.cat([(after[k] - before[k]).flatten() for k in before])
    script = tmp_path / "ddp.py"
    tests = str(Path(__file__).resolve().parent)
    script.write_text(DDP_SCRIPT.format(tests=tests, out=str(tmp_path / "ddp"), encoder=str(tiny_encoder)))
    with socket.socket() as s:  # a free port for the rendezvous
        s.bind(("127.0.0.1", 0))
        port = str(s.getsockname()[1])
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", port, str(script)]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    ddp = torch.load(tmp_path / "ddp" / "update.pt")
    assert single.norm() > 0 and (ddp - single).norm() <= 1e-5 * single.norm()
