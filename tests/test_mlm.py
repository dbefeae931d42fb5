"""Masked-LM task type and ALUM: corpus packing, masking, the ALUM term, the MLM head, the chain
pretrain -> fine-tune -> predict, and clear errors for corpora that cannot make a block."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import datasets
import pytest
import torch
from transformers import AutoModel, AutoModelForMaskedLM, AutoTokenizer

from mtadv.adversarial import ADV_METHODS, StepContext
from mtadv.adversarial.perturb import RngState
from mtadv.checkpoint import load_checkpoint, load_encoder, save_checkpoint
from mtadv.cli import run_train
from mtadv.config import AdvConfig, RunConfig, TrainConfig
from mtadv.data_utils.corpus import pack_corpus, read_corpus, special_token_template
from mtadv.data_utils.mlm_collate import MLMCollator
from mtadv.errors import ConfigError
from mtadv.model import MultiTaskModel
from mtadv.taskdef import load_task_defs
from mtadv.tasks import pipeline_for

REPO = Path(__file__).resolve().parent.parent
SAMPLE_CORPUS = REPO / "data" / "mlm_sample" / "train.txt"
SEQ = 32


def write_task_def(directory: Path, split: str = "path: corpus.txt", name: str = "mlm") -> Path:
    path = directory / "mlm.yml"
    path.write_text(f"tasks:\n  {name}:\n    type: mlm\n    splits:\n      train: {{{split}}}\n")
    return path


def corpus_task(tmp_path: Path, text: str, split: str = "path: corpus.txt"):
    (tmp_path / "corpus.txt").write_text(text, encoding="utf-8")
    return load_task_defs(write_task_def(tmp_path, split))["mlm"]


def sample_lines(n: int) -> str:
    return "\n".join(SAMPLE_CORPUS.read_text(encoding="utf-8").splitlines()[:n]) + "\n"


def packed(tmp_path: Path, tokenizer, n_lines: int = 200, holdout: float = 0.1):
    task = corpus_task(tmp_path, sample_lines(n_lines))
    raw = read_corpus(task, "train", str(tmp_path), holdout)
    return task, raw, pack_corpus(raw, tokenizer, SEQ, str(tmp_path / "cache"), ("test", n_lines))


# ---------------------------------------------------------------- corpus and packing
def test_tiny_corpus_packs_into_full_blocks_of_the_token_stream(tmp_path, tiny_encoder):
    tok = AutoTokenizer.from_pretrained(tiny_encoder)
    task, raw, blocks = packed(tmp_path, tok)
    prefix, suffix = special_token_template(tok)
    assert (prefix, suffix) == ([tok.cls_token_id], [tok.sep_token_id])
    stream: list[int] = []
    for text in raw["text"]:
        stream += ([tok.sep_token_id] if stream else []) + tok(text, add_special_tokens=False)["input_ids"]
    content = SEQ - 2
    assert len(blocks.data) == len(stream) // content  # one packing batch: only the tail is dropped
    for i, row in enumerate(blocks.data):
        assert len(row["input_ids"]) == SEQ and row["attention_mask"] == [1] * SEQ
        assert row["input_ids"] == prefix + stream[i * content : (i + 1) * content] + suffix
        assert row["example_idx"] == i


def test_holdout_is_disjoint_fixed_and_the_size_asked(tmp_path):
    task = corpus_task(tmp_path, sample_lines(200))
    assert [s.name for s in task.dev_splits()] == ["dev"]  # added: the task gave no dev split
    train, dev = (read_corpus(task, s, str(tmp_path), 0.1) for s in ("train", "dev"))
    assert len(dev) == 20 and len(train) == 180
    assert not set(train["text"]) & set(dev["text"])
    assert list(read_corpus(task, "dev", str(tmp_path), 0.1)["text"]) == list(dev["text"])


def test_paragraph_passages_and_jsonl_text_field(tmp_path):
    def passages(task) -> list[str]:  # train + held-out
        return sorted(
            [
                *read_corpus(task, "train", str(tmp_path), 0.5)["text"],
                *read_corpus(task, "dev", str(tmp_path), 0.5)["text"],
            ]
        )

    task = corpus_task(tmp_path, "a b\nc d\n\n\ne f\n", split="path: corpus.txt, passages: paragraph")
    assert passages(task) == ["a b c d", "e f"]
    (tmp_path / "c.jsonl").write_text('{"body": "one two"}\n\n{"body": "three"}\n')
    task = load_task_defs(write_task_def(tmp_path, "path: c.jsonl, columns: {text: body}"))["mlm"]
    assert passages(task) == ["one two", "three"]


# ---------------------------------------------------------------- masking
def test_masking_rate_and_80_10_10_split(tmp_path, tiny_encoder):
    tok = AutoTokenizer.from_pretrained(tiny_encoder)
    _, _, blocks = packed(tmp_path, tok, n_lines=600, holdout=0.01)
    rows = [dict(r) for r in blocks.data]
    batch = MLMCollator(tok, probability=0.15, seed=3)(rows)
    original = torch.tensor([r["input_ids"] for r in rows])
    special = torch.isin(original, torch.tensor(tok.all_special_ids))
    chosen = batch["mlm_labels"] != -100
    assert not (chosen & special).any()
    rate = chosen.sum().item() / (~special).sum().item()
    assert 0.13 < rate < 0.17, rate  # ~15% of ~20k maskable tokens
    assert torch.equal(batch["mlm_labels"][chosen], original[chosen])
    assert torch.equal(batch["labels"], original[chosen])  # (N,) flat labels, row-major
    as_mask = (batch["input_ids"][chosen] == tok.mask_token_id).float().mean().item()
    assert 0.75 < as_mask < 0.85, as_mask
    assert torch.equal(batch["input_ids"][~chosen], original[~chosen])
    again = MLMCollator(tok, probability=0.15, seed=3)(rows)
    assert torch.equal(again["input_ids"], batch["input_ids"])  # masks depend on (seed, blocks) only


def test_whole_word_masking_chooses_every_piece_of_a_word(tmp_path, tiny_encoder):
    tok = AutoTokenizer.from_pretrained(tiny_encoder)
    raw = datasets.Dataset.from_dict({"text": ["unbelievable things happened in the marketplace yesterday"] * 60})
    blocks = pack_corpus(raw, tok, SEQ, str(tmp_path), "wwm", with_offsets=True)
    batch = MLMCollator(tok, probability=0.3, whole_word=True, seed=0)([dict(r) for r in blocks.data])
    chosen = (batch["mlm_labels"] != -100).tolist()
    n_words = 0
    for row, ids in zip(chosen, blocks.data["input_ids"]):
        pieces = tok.convert_ids_to_tokens(ids)
        special = [p in tok.all_special_tokens for p in pieces]  # a block may start mid-word
        starts = [i for i, p in enumerate(pieces) if not p.startswith("##") or special[i - 1]] + [len(pieces)]
        for a, b in zip(starts, starts[1:]):
            assert len(set(row[a:b])) == 1, pieces[a:b]  # a word is chosen whole or not at all
            n_words += b - a > 1 and row[a]
    assert n_words > 0  # some multi-piece words were chosen


def test_held_out_masks_are_identical_across_runs_and_seeds(tmp_path, tiny_encoder):
    _, tokenizer = load_encoder(str(tiny_encoder))
    task = corpus_task(tmp_path, sample_lines(300))
    cfgs = [RunConfig(train=TrainConfig(data_dir=str(tmp_path), max_seq_len=SEQ, seed=s)) for s in (1, 2)]
    splits = []
    for i, cfg in enumerate(cfgs):
        raw = pipeline_for(task).read(task, "dev", str(tmp_path), cfg)
        splits.append(pipeline_for(task).tokenize(raw, task, "dev", tokenizer, cfg, str(tmp_path / f"c{i}")))
    assert list(splits[0].data["input_ids"]) == list(splits[1].data["input_ids"])
    assert list(splits[0].data["mlm_labels"]) == list(splits[1].data["mlm_labels"])
    assert any(x != -100 for row in splits[0].data["mlm_labels"] for x in row)


# ---------------------------------------------------------------- the ALUM term
def mlm_model_and_batch(tmp_path: Path, encoder_dir: Path):
    encoder, tok = load_encoder(str(encoder_dir))
    task = corpus_task(tmp_path, sample_lines(100))
    model = MultiTaskModel(encoder, {"mlm": task})
    raw = read_corpus(task, "train", str(tmp_path), 0.1)
    blocks = pack_corpus(raw, tok, SEQ, str(tmp_path / "cache"), "alum")
    return model, task, MLMCollator(tok, seed=0)([dict(r) for r in blocks.data.select(range(4))])


def alum_term(model, task, batch, **adv) -> float:
    model.train()  # dropout on: the zero-perturbation case must rely on the replayed masks
    torch.manual_seed(0)
    rng = RngState.capture(torch.device("cpu"))
    embeds = model.embed(batch)
    logits = model(batch, task="mlm", inputs_embeds=embeds)  # (N, V) at the masked positions
    assert logits.shape == (batch["labels"].numel(), model.encoder.config.vocab_size)
    ctx = StepContext(model, task, batch, embeds, logits, logits.sum() * 0, rng)
    reg = ADV_METHODS.get("alum")(AdvConfig(adv="alum", adv_weight=10.0, **adv))
    loss, logs = reg.loss(ctx)
    return loss.item()


def test_alum_term_is_zero_without_perturbation_and_positive_with_one(tmp_path, tiny_encoder):
    model, task, batch = mlm_model_and_batch(tmp_path, tiny_encoder)
    zero = {"adv_eps": 0.0, "adv_init_mag": 0.0, "adv_lr": 0.0}
    assert alum_term(model, task, batch, **zero) == 0.0
    assert alum_term(model, task, batch, **zero, adv_replay_dropout=False) > 0  # dropout noise alone
    assert alum_term(model, task, batch, adv_eps=1e-1, adv_init_mag=1e-2, adv_lr=1e-1) > 0


def test_alum_preset_has_the_paper_settings():
    from mtadv.config import PRESETS

    values = PRESETS["alum"][1]
    assert values["adv"] == "alum" and values["adv_weight"] == 10.0 and values["adv_steps"] == 1
    assert (values["adv_eps"], values["adv_lr"], values["adv_init_mag"]) == (1e-5, 1e-3, 1e-5)


# ---------------------------------------------------------------- the MLM head
def masked_lm_checkpoint(directory: Path, encoder_dir: Path) -> Path:
    """A tiny *ForMaskedLM checkpoint whose head weights are recognizable."""
    model = AutoModelForMaskedLM.from_pretrained(encoder_dir)
    with torch.no_grad():
        model.cls.predictions.transform.dense.weight.fill_(0.125)
        model.cls.predictions.bias.fill_(-0.5)
    model.save_pretrained(directory)
    AutoTokenizer.from_pretrained(encoder_dir).save_pretrained(directory)
    return directory


def test_checkpoint_with_mlm_head_keeps_its_weights_at_step_0(tmp_path, tiny_encoder):
    ckpt = masked_lm_checkpoint(tmp_path / "bert-mlm", tiny_encoder)
    encoder, _ = load_encoder(str(ckpt))
    task = corpus_task(tmp_path, sample_lines(10))
    head = MultiTaskModel(encoder, {"mlm": task}).heads["mlm"]
    assert torch.all(head.cls.predictions.transform.dense.weight == 0.125)
    assert torch.all(head.cls.predictions.bias == -0.5)
    assert head.cls.predictions.decoder.weight is encoder.get_input_embeddings().weight  # tied, as in BERT


def test_checkpoint_without_mlm_head_initializes_it_and_says_so(tmp_path, tiny_encoder, caplog):
    encoder, _ = load_encoder(str(tiny_encoder))  # a bare BertModel, like the MiniLM package
    task = corpus_task(tmp_path, sample_lines(10))
    with caplog.at_level(logging.WARNING, logger="mtadv.tasks.mlm"):
        MultiTaskModel(encoder, {"mlm": task})
    assert "no pretrained MLM head" in caplog.text


def test_saved_checkpoint_loads_as_masked_lm_and_as_encoder(tmp_path, tiny_encoder):
    ckpt = masked_lm_checkpoint(tmp_path / "bert-mlm", tiny_encoder)
    encoder, tok = load_encoder(str(ckpt))
    task_def = write_task_def(tmp_path)
    (tmp_path / "corpus.txt").write_text(sample_lines(10))
    model = MultiTaskModel(encoder, load_task_defs(task_def))
    save_checkpoint(tmp_path / "out", model, tok, task_def.read_text(), RunConfig().to_dict())
    assert json.loads((tmp_path / "out" / "config.json").read_text())["architectures"] == ["BertForMaskedLM"]
    mlm = AutoModelForMaskedLM.from_pretrained(tmp_path / "out")
    assert torch.all(mlm.cls.predictions.transform.dense.weight == 0.125)
    assert AutoModel.from_pretrained(tmp_path / "out").config.hidden_size == 32
    reloaded, *_ = load_checkpoint(str(tmp_path / "out"))
    assert torch.all(reloaded.heads["mlm"].cls.predictions.bias == -0.5)


# ---------------------------------------------------------------- errors
@pytest.mark.parametrize(
    ("text", "message"),
    [("\n  \n\n", "corpus is empty"), ("just a few words\n" * 2, "fewer than one block")],
)
def test_corpus_that_cannot_fill_a_block_is_a_clear_error(tmp_path, tiny_encoder, capsys, text, message):
    (tmp_path / "corpus.txt").write_text(text)
    argv = ["--task_def", str(write_task_def(tmp_path)), "--data_dir", str(tmp_path), "--max_seq_len", str(SEQ)]
    argv += ["--init_checkpoint", str(tiny_encoder), "--output_dir", str(tmp_path / "run"), "--mlm_holdout", "0.5"]
    assert run_train(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "task 'mlm'" in err and "corpus.txt" in err
    assert not (tmp_path / "run").exists()


def test_holdout_of_nothing_is_a_clear_error(tmp_path):
    task = corpus_task(tmp_path, sample_lines(5))
    with pytest.raises(ConfigError, match="holds out nothing"):
        read_corpus(task, "dev", str(tmp_path), 0.01)
    with pytest.raises(ConfigError, match="--mlm_holdout"):
        read_corpus(task, "train", str(tmp_path), 0.0)


# ---------------------------------------------------------------- end to end
def small_run(*extra: str) -> list[str]:
    return ["--max_steps", "3", "--batch_size", "4", "--eval_batch_size", "16", "--max_seq_len", str(SEQ), *extra]


@pytest.mark.integration
def test_pretrain_with_alum_then_fine_tune_then_predict(tmp_path, tiny_encoder, glue_sample):
    from predict import main as predict_main

    (tmp_path / "corpus.txt").write_text(sample_lines(300))
    pre = tmp_path / "alum"
    argv = ["--task_def", str(write_task_def(tmp_path)), "--data_dir", str(tmp_path), "--alum", "--log_steps", "1"]
    assert run_train([*argv, "--init_checkpoint", str(tiny_encoder), "--output_dir", str(pre), *small_run()]) == 0
    results = json.loads((pre / "results.json").read_text())
    assert results["results"]["mlm"]["dev"]["perplexity"] > 1.0
    logged = [json.loads(line) for line in (pre / "history.jsonl").read_text().splitlines()]
    assert any(r.get("train/mlm/adv_loss", 0) > 0 for r in logged)
    assert AutoModelForMaskedLM.from_pretrained(pre / "best").config.architectures == ["BertForMaskedLM"]

    fine = tmp_path / "rte"
    argv = ["--task_def", str(REPO / "task_defs" / "glue.yml"), "--tasks", "rte", "--data_dir", str(glue_sample)]
    argv += ["--init_checkpoint", str(pre / "best"), "--output_dir", str(fine), "--max_train_samples", "32"]
    assert run_train([*argv, *small_run("--max_eval_samples", "16")]) == 0
    out = tmp_path / "pred"
    assert predict_main(["--checkpoint", str(fine / "best"), "--split", "dev", "--output_dir", str(out)]) == 0
    predicted = json.loads((out / "metrics.json").read_text())["results"]["rte"]["dev"]["accuracy"]
    assert predicted == json.loads((fine / "results.json").read_text())["results"]["rte"]["dev"]["accuracy"]


@pytest.mark.integration
def test_mlm_as_an_auxiliary_task_does_not_enter_avg(tmp_path, tiny_encoder, glue_sample):
    (tmp_path / "RTE").symlink_to(glue_sample / "RTE")
    (tmp_path / "corpus.txt").write_text(sample_lines(200))
    glue = (REPO / "task_defs" / "glue.yml").read_text().split("\ntasks:\n", 1)[1]
    rte = "  rte:" + glue.split("\n  rte:", 1)[1].split("\n\n", 1)[0]
    mixed = tmp_path / "mixed.yml"
    mixed.write_text(f"tasks:\n{rte}\n  mlm:\n    type: mlm\n    splits:\n      train: {{path: corpus.txt}}\n")
    argv = ["--task_def", str(mixed), "--data_dir", str(tmp_path), "--init_checkpoint", str(tiny_encoder)]
    argv += ["--output_dir", str(tmp_path / "run"), "--max_train_samples", "64", "--mlm_holdout", "0.1"]
    assert run_train([*argv, *small_run()]) == 0
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert set(results["results"]) == {"rte", "mlm"}
    assert results["best"]["value"] == pytest.approx(results["results"]["rte"]["dev"]["accuracy"])
