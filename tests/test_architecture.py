"""The package's structure, read from its source: no import cycles, layers kept, the docs' table
current, every third-party import declared."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _load_script():
    spec = importlib.util.spec_from_file_location("import_graph", ROOT / "scripts" / "import_graph.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["import_graph"] = module  # dataclasses look their module up while building the class
    spec.loader.exec_module(module)
    return module


graph = _load_script()
MODULES = graph.read_modules()

# What the networks may not know: the Hub, bundled models, the noise process, training, judging, the command.
ABOVE_MODELS = ("hub", "pretrained", "diffusion", "training", "evaluation", "cli")


def _reachable(start: set[str], edges: dict[str, set[str]]) -> set[str]:
    seen, todo = set(), list(start)
    while todo:
        node = todo.pop()
        if node not in seen:
            seen.add(node)
            todo.extend(edges.get(node, ()))
    return seen


def test_the_graph_sees_every_kind_of_import(tmp_path: Path) -> None:
    package = tmp_path / "clevr_diffusion"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text(
        "from typing import TYPE_CHECKING\n"
        "import numpy.linalg\n"
        "from . import b\n"
        "if TYPE_CHECKING:\n    from .sub import c\n"
        "def f():\n    from .sub.c import thing\n"
    )
    (package / "b.py").write_text("from .sub import c as _c\n")
    (package / "sub" / "__init__.py").write_text("from .. import a\n")
    (package / "sub" / "c.py").write_text("from ..b import name\n")
    modules = graph.read_modules(tmp_path)
    edges = graph.module_graph(modules)
    assert edges["clevr_diffusion.a"] == {"clevr_diffusion.b", "clevr_diffusion.sub.c"}  # not the TYPE_CHECKING one
    assert modules["clevr_diffusion.a"].external == {"typing", "numpy"}
    assert edges["clevr_diffusion.sub"] == {"clevr_diffusion.a"}  # relative to the package itself
    assert graph.find_cycle(edges) == ["clevr_diffusion.b", "clevr_diffusion.sub.c", "clevr_diffusion.b"]
    assert graph.find_cycle({"x": {"y"}, "y": set()}) is None


def test_no_module_imports_a_module_that_imports_it_back() -> None:
    cycle = graph.find_cycle(graph.module_graph(MODULES))
    assert cycle is None, " -> ".join(cycle)


def test_components_form_layers() -> None:
    components = graph.component_graph(MODULES)
    cycle = graph.find_cycle(components)
    assert cycle is None, " -> ".join(cycle)
    layer = graph.layers(components)
    assert all(layer[dep] < layer[name] for name, deps in components.items() for dep in deps)


@pytest.mark.parametrize("start", ["models", "model_folder"])
def test_networks_and_the_model_folder_know_nothing_above_them(start: str) -> None:
    edges = graph.module_graph(MODULES)
    ours = {name for name in MODULES if graph.component(name) == start}
    direct = {graph.component(t) for name in ours for t in edges[name]}
    assert not direct & set(ABOVE_MODELS), direct
    # Nor through a module between: everything they reach stays below them.
    reached = {graph.component(name) for name in _reachable(ours, edges)}
    assert not reached & set(ABOVE_MODELS), reached


def test_model_folder_names_are_defined_once() -> None:
    """No module but model_folder.layout spells out the model folder's file names."""
    names = ('"config.json"', '"report.json"', '"trainer_config.json"', '"sampler_config.json"', '"scheduler_config.json"')
    # Another fact of the same spelling: the evaluator's training run keeps its settings in config.json.
    other_facts = {("clevr_diffusion.training.evaluator", '"config.json"')}
    offenders = []
    for name, module in MODULES.items():
        if name == "clevr_diffusion.model_folder.layout" or graph.component(name) == "render":
            continue
        code = module.path.read_text(encoding="utf-8")
        offenders += [f"{name}: {n}" for n in names if n in code and (name, n) not in other_facts]
        if re.search(r"15 \* 2\s*\*\*\s*20", code) and name != "clevr_diffusion.constants":
            offenders.append(f"{name}: the 15 MiB shard limit")
    assert not offenders, offenders


def test_architecture_doc_is_the_generated_table() -> None:
    doc = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    assert graph.doc_block(doc) == graph.table(MODULES), "run python3 scripts/import_graph.py --write"


DISTRIBUTIONS = {"PIL": "pillow", "yaml": "pyyaml", "huggingface_hub": "huggingface-hub"}
"""Import name -> distribution name, where they differ (lower case, '-' for '_')."""


def _declared() -> set[str]:
    text = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    block = re.search(r"^dependencies = \[(.*?)^\]", text, re.MULTILINE | re.DOTALL)
    assert block is not None
    names = re.findall(r'^\s*"([A-Za-z0-9_.-]+)', block.group(1), re.MULTILINE)
    return {n.lower().replace("_", "-") for n in names}


def test_every_third_party_import_is_a_declared_dependency_and_back() -> None:
    imported = set()
    for module in MODULES.values():
        imported |= {m for m in module.external if m not in sys.stdlib_module_names and m != "__future__"}
    used = {DISTRIBUTIONS.get(m, m).lower().replace("_", "-") for m in imported}
    # Clients huggingface_hub may use are looked up in sys.modules, never imported by us.
    assert used == _declared(), (used ^ _declared())


def test_the_ci_installs_the_lower_bounds_of_pyproject() -> None:
    """.ci/run's oldest-dependencies job pins exactly pyproject's lower bounds (kept in step)."""
    text = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    bounds = dict(re.findall(r'^\s*"([A-Za-z0-9_-]+)>=([0-9.]+)', text.split("[project.optional-dependencies]")[0], re.MULTILINE))
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    job = ci[ci.index("oldest dependencies") :]
    for name, version in bounds.items():
        if name == "torch":
            continue  # CI pins torch 2.13, a small CPU wheel; the lower bound is older
        pinned = re.search(rf'"{re.escape(name)}(==|>=)([0-9.]+)"', job, re.IGNORECASE)
        assert pinned is not None, f"{name} is not installed by the oldest-dependencies job"
        assert pinned.group(2) in (version, version + ".0"), (name, version, pinned.group(0))

