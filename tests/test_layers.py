"""The package's layers, checked on every import statement of its code.

    cli, fixtures.plugin               the commands and the pytest plugin (top)
    comparison                         pipelines compared (runs pipelines, plants bugs, judges)
    fixtures.probes.adapters           real frameworks (and ptbench's backends) under the probe
    reports                            results store and reports
    pipelines                          configs, losses, backends, stages, the runner
    fixtures.probes (core)             reference maths, equivalence check, diagnosis: independent
    fixtures.models, fixtures.tasks,   tiny models, tasks, atomic writes, the commands' help
    fixtures.atomic, fixtures.cli_help format (bottom)

A module may import from its own layer and the ones below, never from above; the probe's core
imports nothing of ptbench's training code, so it can judge it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = {"ptbench.pipelines": "pipelines", "ptbench.fixtures": "fixtures",
           "ptbench.reports": "reports", "ptbench.cli": "cli", "ptbench.comparison": "comparison"}
BOTTOM = ("ptbench.fixtures.models", "ptbench.fixtures.tasks", "ptbench.fixtures.atomic",
          "ptbench.fixtures.cli_help")
PROBE_CORE = tuple(f"ptbench.fixtures.probes.{m}" for m in
                   ("reference", "equivalence", "diagnose", "report", "spec", "data"))
ADAPTERS_AND_UP = ("ptbench.fixtures.probes", "ptbench.fixtures.plugin", "ptbench.cli",
                   "ptbench.comparison")
FORBIDDEN = [
    # (modules under this prefix, may not import these prefixes)
    (BOTTOM, ("ptbench.pipelines", "ptbench.reports", *ADAPTERS_AND_UP)),
    (PROBE_CORE, ("ptbench.pipelines", "ptbench.reports", "ptbench.fixtures.probes.adapters",
                  "ptbench.fixtures.probes.plant", "ptbench.fixtures.plugin", "ptbench.cli")),
    (("ptbench.pipelines",), ADAPTERS_AND_UP),
    (("ptbench.reports",), ("ptbench.fixtures.probes.adapters", "ptbench.fixtures.plugin",
                            "ptbench.cli", "ptbench.comparison")),
    (("ptbench.comparison",), ("ptbench.fixtures.plugin", "ptbench.cli",
                               "ptbench.fixtures.probes.adapters")),
    (("ptbench.fixtures.probes",), ("ptbench.cli", "ptbench.comparison")),
    (("ptbench.fixtures.plugin",), ("ptbench.cli",)),
]


def modules() -> dict[str, Path]:
    found = {}
    for package, folder in FOLDERS.items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            parts = list(path.relative_to(ROOT / folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join([package, *parts])] = path
    return found


def imports(path: Path) -> set[str]:
    """Every ptbench module named by an import statement of the file (also inside functions)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names |= {node.module} | {f"{node.module}.{a.name}" for a in node.names}
    return {n for n in names if n.startswith("ptbench")}


def _under(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def violations(found: dict[str, Path]) -> list[str]:
    bad = []
    for module, path in found.items():
        for importer, forbidden in FORBIDDEN:
            if not _under(module, importer):
                continue
            allowed_probe_core = _under(module, PROBE_CORE)
            for name in sorted(imports(path)):
                if _under(name, forbidden) and not (allowed_probe_core and _under(name, PROBE_CORE)):
                    bad.append(f"{module} imports {name}")
    return bad


def test_every_package_folder_is_scanned():
    found = modules()
    assert {"ptbench.pipelines.run", "ptbench.fixtures.probes.equivalence",
            "ptbench.fixtures.models.base_model", "ptbench.reports.store"} <= set(found)


def test_no_module_imports_from_a_layer_above_it():
    assert violations(modules()) == []


@pytest.mark.parametrize(("module", "planted"), [
    ("ptbench.fixtures.models.base_model", "from ptbench.pipelines.backends.native import NativeTrainStep"),
    ("ptbench.fixtures.probes.reference", "from ptbench.pipelines import losses"),
    ("ptbench.fixtures.probes.equivalence", "import ptbench.fixtures.probes.adapters.registry"),
    ("ptbench.pipelines.run", "from ptbench.fixtures.probes.adapters import registry"),
    ("ptbench.pipelines.run", "    from ptbench.cli import main"),
    ("ptbench.fixtures.probes.matrix", "from ptbench.cli import HelpFormatter"),
    ("ptbench.fixtures.tasks.arithmetic", "    from ptbench.reports.store import ResultsFile"),
])
def test_a_planted_forbidden_import_is_caught(tmp_path, module, planted):
    found = modules()
    copy = tmp_path / "planted.py"
    indent = "def f():\n" if planted.startswith(" ") else ""
    copy.write_text(found[module].read_text() + "\n" + indent + planted + "\n")
    assert violations({**found, module: copy}) != []


def test_benchmarks_and_package_do_not_edit_sys_path():
    for folder in ("benchmarks", *FOLDERS.values(), "bench"):
        for path in (ROOT / folder).rglob("*.py"):
            assert "sys.path.insert" not in path.read_text(), path
