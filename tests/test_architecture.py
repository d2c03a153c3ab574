"""The house stays one-way: imports parsed with `ast` (module level and inside functions).

    workflows/      above both sides: runs the experiment side, then the analysis side
    scaling/        the experiment side (torch); imports nothing from analysis/ or workflows/
    analysis/       the analysis side; imports nothing from scaling/, only contract/
    contract/       the one shared package below both sides (and its submodules, e.g. .schedule,
                    the LR schedules the trainer runs and analysis rebuilds): the standard library only

No import cycle anywhere (a function-local import that dodges one is still an edge here).
Every console script of pyproject.toml answers --help.
"""

from __future__ import annotations

import ast
import contextlib
import importlib
import io
import subprocess
import sys
from importlib.metadata import distribution
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("contract", "scaling", "analysis", "workflows", "hydra_plugins/scaling_sweeper")
HEAVY = ("torch", "lightning", "pytorch_lightning")


def module_name(path: Path) -> str:
    """scaling/sweep/kinds.py -> scaling.sweep.kinds; scaling/__init__.py -> scaling."""
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def project_modules() -> dict[str, Path]:
    """Every module of the project packages, by dotted name."""
    return {module_name(p): p for pkg in PACKAGES for p in sorted((ROOT / pkg).rglob("*.py"))}


def imported_names(path: Path, name: str) -> set[str]:
    """The dotted names `path` imports anywhere in it (relative imports resolved)."""
    is_pkg = path.name == "__init__.py"
    package = name if is_pkg else name.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            out.add(base)
            out |= {f"{base}.{a.name}" for a in node.names}  # `from pkg import module`
    return out


def graph() -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    """(edges between project modules, every imported top-level package per module)."""
    mods = project_modules()
    edges: dict[str, set[str]] = {}
    external: dict[str, set[str]] = {}
    for name, path in mods.items():
        names = imported_names(path, name)
        edges[name] = {n for n in names if n in mods and n != name}
        external[name] = {n.split(".")[0] for n in names if n and n not in mods}
    return edges, external


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a path [a, b, ..., a], or None."""
    state: dict[str, int] = {}  # 1 on the DFS stack, 2 done
    stack: list[str] = []

    def visit(n: str) -> list[str] | None:
        state[n] = 1
        stack.append(n)
        for m in sorted(edges.get(n, ())):
            if state.get(m) == 1:
                return [*stack[stack.index(m) :], m]
            if m not in state and (found := visit(m)):
                return found
        stack.pop()
        state[n] = 2
        return None

    for n in sorted(edges):
        if n not in state and (found := visit(n)):
            return found
    return None


def test_find_cycle_and_imports_see_function_local_imports(tmp_path) -> None:
    """The checker itself: a cycle hidden in a function-local import is found."""
    f = tmp_path / "m.py"
    f.write_text("import os\n\ndef g():\n    from .sib import x\n    import scaling.train\n")
    assert imported_names(f, "pkg.m") >= {"os", "pkg.sib", "pkg.sib.x", "scaling.train"}
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycle() -> None:
    edges, _ = graph()
    cycle = find_cycle(edges)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_scaling_imports_nothing_above_or_beside_it() -> None:
    edges, _ = graph()
    bad = {
        f"{m} -> {t}"
        for m, targets in edges.items()
        if m.startswith("scaling")
        for t in targets
        if t.startswith(("analysis", "workflows"))
    }
    assert not bad, f"scaling/ imports analysis/ or workflows/: {sorted(bad)}"


def test_analysis_imports_nothing_of_scaling_and_never_torch() -> None:
    edges, external = graph()
    bad = {
        f"{m} -> {t}"
        for m, targets in edges.items()
        if m.startswith("analysis")
        for t in targets
        if t.startswith(("scaling", "workflows", "hydra_plugins"))
    }
    bad |= {
        f"{m} -> {t}"
        for m, ts in external.items()
        if m.startswith("analysis")
        for t in ts
        if t in HEAVY
    }
    assert not bad, f"analysis/ imports scaling/, workflows/ or torch: {sorted(bad)}"


def is_contract(name: str) -> bool:
    """contract or one of its submodules (contract.schedule, ...)."""
    return name == "contract" or name.startswith("contract.")


# The one exception, by module: contract.settings reads the named settings files (YAML, like
# the rest of conf/) with PyYAML, which is pure Python and installed on both sides already
# (OmegaConf depends on it); a stdlib YAML subset would be a second parser to keep right.
CONTRACT_EXTRA = {"contract.settings": {"yaml"}}


def test_contract_is_standard_library_only() -> None:
    edges, external = graph()
    contract = [m for m in edges if is_contract(m)]
    assert {"contract", "contract.schedule", "contract.settings"} <= set(contract), contract
    bad = {f"{m} -> {t}" for m in contract for t in edges[m] if not is_contract(t)}
    bad |= {
        f"{m} -> {t}"
        for m in contract
        for t in external[m]
        if t not in sys.stdlib_module_names and t not in CONTRACT_EXTRA.get(m, set())
    }
    assert not bad, f"contract imports beyond the standard library: {sorted(bad)}"


def test_contract_rule_sees_submodules(tmp_path) -> None:
    """The checker itself: a contract submodule importing numpy or scaling.model is caught."""
    f = tmp_path / "schedule.py"
    f.write_text("import numpy\nfrom scaling.model import GPT\n")
    names = imported_names(f, "contract.schedule")
    assert is_contract("contract.schedule") and not is_contract("contractor")
    assert "numpy" in names and not is_contract("scaling.model")


def test_analysis_loads_without_torch() -> None:
    code = (
        # every module a scaling-fit / scaling-plot user loads (tests/test_laws_fit.py's
        # test_analysis_never_imports_torch imports the same list: one of the two can go)
        "import sys, analysis.cli, analysis.plots, analysis.collect, analysis.laws, analysis.fit, "
        "analysis.optimal, analysis.report, analysis.wandb_offline, analysis.wandb_log, "
        "analysis.style\n"
        f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]", out.stdout


# the installed console scripts ([project.scripts]; `pip install -e .` after changing them)
SCRIPTS = {
    e.name: e.value for e in distribution("scaling").entry_points if e.group == "console_scripts"
}


def test_commands_share_one_scheme() -> None:
    assert all(name.startswith("scaling-") for name in SCRIPTS), sorted(SCRIPTS)
    for name in ("scaling-train", "scaling-fit", "scaling-plot", "scaling-best-lr", "scaling-demo"):
        assert name in SCRIPTS


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_every_command_answers_help(name, monkeypatch) -> None:
    """`<command> --help` prints a usage and exits 0 (in-process, as the installed script)."""
    module, func = SCRIPTS[name].split(":")
    main = getattr(importlib.import_module(module), func)
    monkeypatch.setattr(sys, "argv", [name, "--help"])
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf), pytest.raises(SystemExit) as exit_:
        main()
    assert exit_.value.code in (0, None)
    text = buf.getvalue()
    assert len(text) > 200 and (name in text or "powered by Hydra" in text), text
