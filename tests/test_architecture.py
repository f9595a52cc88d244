"""The floors of the package: each imports only its own and earlier ones.  pytest tests/test_architecture.py -q

    core (kit/*.py) -> kit/data -> kit/train -> kit/board -> kit/predict -> kit/jobs

Read from the source (every `import`, at the top or inside a function), so that no import is hidden.
"""
import ast
from pathlib import Path

import pytest

KIT = Path(__file__).resolve().parent.parent / "kit"
FLOORS = ["core", "tracking", "data", "train", "board", "predict", "jobs"]


def floor_of(module: str) -> str:
    """'kit.train.loop' -> 'train'; 'kit.config' -> 'core'."""
    parts = module.split(".")
    return parts[1] if len(parts) > 2 and parts[1] in FLOORS else "core"


def imports_of(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("kit"):
            found |= {f"{node.module}.{a.name}" if node.module in {f"kit.{f}" for f in FLOORS} else node.module
                      for a in node.names}
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("kit")}
    return found


MODULES = sorted(p for p in KIT.rglob("*.py") if p.name != "__main__.py")


@pytest.mark.parametrize("path", MODULES, ids=[str(p.relative_to(KIT)) for p in MODULES])
def test_no_module_imports_a_later_floor(path):
    module = "kit." + ".".join(path.relative_to(KIT).with_suffix("").parts)
    here = FLOORS.index(floor_of(module))
    later = sorted(m for m in imports_of(path) if FLOORS.index(floor_of(m)) > here)
    assert not later, f"{path.relative_to(KIT)} (floor {FLOORS[here]}) imports later floors: {later}"


def test_every_floor_says_what_it_owns():
    for floor in FLOORS[1:]:
        doc = ast.get_docstring(ast.parse((KIT / floor / "__init__.py").read_text())) or ""
        assert "May import" in doc, f"kit/{floor}/__init__.py must say what it may import"


def test_rooms_a_reader_can_hold():
    """No module over 400 lines, no class or function over 150: each fits a reading."""
    big = [f"{p.relative_to(KIT)} ({n} lines)" for p in MODULES if (n := len(p.read_text().splitlines())) > 400]
    long = [f"{p.relative_to(KIT)}:{node.name} ({node.end_lineno - node.lineno + 1} lines)" for p in MODULES
            for node in ast.walk(ast.parse(p.read_text()))
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
            and node.end_lineno - node.lineno + 1 > 150]
    assert not big and not long, f"split: {big + long}"


def test_the_public_api_resolves_and_stays_light():
    """`from kit import main, make_folds, ...` works whatever the floors are called; `import kit` loads none."""
    import subprocess
    import sys

    import kit
    want = {"main", "load_config", "find_preset", "scan", "download", "make_folds", "train_folds",
            "write_submissions", "run"}
    assert set(kit.__all__) == want, f"the documented names: {sorted(set(kit.__all__) ^ want)} changed"
    doc = kit.__doc__ or ""
    for name in kit.__all__:
        assert callable(getattr(kit, name)), name
    for name in ("main", "make_folds", "train_folds", "write_submissions"):
        assert name in doc, f"kit's docstring shows {name}"
    assert kit.main(["--help-config"]) == 0, "kit.main is the command line"
    code = "import kit, sys; print(sorted(m for m in ('torch', 'kit.jobs.cli', 'kit.train.loop') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]", f"import kit loaded {out}"


def _module_of(path: Path) -> str:
    return "kit." + ".".join(path.relative_to(KIT).with_suffix("").parts).removesuffix(".__init__")


def _graph() -> dict[str, set[str]]:
    """{module: the kit modules it imports}, every import (a function's too), `from kit.x import y` as kit.x.y
    where y is a module."""
    known = {_module_of(p) for p in MODULES}
    graph = {}
    for path in MODULES:
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("kit"):
                found |= {f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in known else node.module
                          for a in node.names}
            elif isinstance(node, ast.Import):
                found |= {a.name for a in node.names if a.name.startswith("kit")}
        graph[_module_of(path)] = {m for m in found if m in known} - {_module_of(path)}
    return graph


def test_inference_and_the_board_never_import_training():
    """kit/predict and kit/board read the experiment folder through kit/experiment.py, on the core floor."""
    reach = sorted(f"{m} -> {i}" for m, imports in _graph().items() if m.startswith(("kit.predict", "kit.board"))
                   for i in imports if i == "kit.train" or i.startswith("kit.train."))
    assert not reach, f"inference stands on training: {reach}"


def test_no_import_circle():
    graph, state, circles = _graph(), {}, []

    def visit(m, trail):
        state[m] = "open"
        for i in sorted(graph.get(m, ())):
            if state.get(i) == "open":
                circles.append(" -> ".join(trail[trail.index(i):] + [i]))
            elif i not in state:
                visit(i, trail + [i])
        state[m] = "done"
    for m in sorted(graph):
        if m not in state:
            visit(m, [m])
    assert not circles, f"import circles: {circles}"
