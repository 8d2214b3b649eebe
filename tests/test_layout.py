"""The architecture as a structure: which room of ddpm/ may import which, no import circles, no ``config``.

Read from the source with ``ast`` (nothing is imported), so a wrong arrow fails here before it becomes a habit.
"""

import ast
import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PKG = os.path.join(ROOT, "ddpm")

# room → the rooms it may import (itself always); "files", "cli" and "progress" are ddpm/files.py, ddpm/cli.py and
# ddpm/progress.py, below every room (atomic writes; command-line words and the one-line error exit; bars and lines).
BELOW = {"files", "cli", "progress"}
ALLOWED = {
    "files": set(),
    "cli": set(),
    "progress": set(),
    "model": BELOW,
    "data": BELOW,
    "run": {"model", "data"} | BELOW,
    "decisions": BELOW,
    "measure": {"model", "data", "run", "decisions"} | BELOW,
    "distributed": {"model", "data", "run"} | BELOW,
    "experiments": {"model", "data", "run", "decisions", "measure"} | BELOW,
    "training": {"model", "data", "run", "decisions", "measure", "distributed"} | BELOW,
}


def modules():
    """dotted name → path of every module under ddpm/."""
    out = {}
    for folder, _, files in os.walk(PKG):
        for name in files:
            if name.endswith(".py"):
                rel = os.path.relpath(os.path.join(folder, name), ROOT)[:-3].replace(os.sep, ".")
                out[rel.removesuffix(".__init__")] = os.path.join(folder, name)
    return out


def imports(path, dotted, *, top_level_only=False):
    """Absolute dotted names imported by a module (relative imports resolved)."""
    tree = ast.parse(open(path, encoding="utf-8").read())
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    package = dotted if path.endswith("__init__.py") else dotted.rsplit(".", 1)[0]
    found = []
    for node in nodes:
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(
                    package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else [])
                )
            found += [base] + [f"{base}.{a.name}" for a in node.names]
    return found


def owner(name, mods):
    """The ddpm module that an imported name belongs to (``ddpm.run.pipeline.Pipeline`` → ``ddpm.run.pipeline``)."""
    while name.startswith("ddpm."):
        if name in mods:
            return name
        name = name.rsplit(".", 1)[0]
    return None


def room(dotted):
    parts = dotted.split(".")
    return parts[1] if len(parts) > 1 else None


def test_every_module_sits_in_a_room():
    rooms = {room(m) for m in modules() if m != "ddpm"}
    assert rooms <= set(ALLOWED), rooms - set(ALLOWED)


def test_rooms_import_only_downwards():
    mods = modules()
    wrong = []
    for dotted, path in mods.items():
        if dotted == "ddpm":
            continue
        mine = room(dotted)
        for name in imports(path, dotted):
            target = room(owner(name, mods) or "")
            if target and target != mine and target not in ALLOWED[mine]:
                wrong.append(f"{dotted} imports {name} ({mine} → {target})")
    assert not wrong, "\n".join(wrong)


def test_nothing_under_ddpm_imports_config():
    offenders = [
        d for d, p in modules().items() if any(n == "config" or n.startswith("config.") for n in imports(p, d))
    ]
    assert not offenders, offenders


def test_no_import_circles():
    """At any depth: an import inside a function counts as much as one at the top (it only hides the circle)."""
    mods = modules()
    graph = {}
    for dotted, path in mods.items():
        targets = set()
        for name in imports(path, dotted):
            target = owner(name, mods)
            if target and target != dotted and not mods[target].endswith("__init__.py"):
                targets.add(target)
        graph[dotted] = targets
    state, cycle = {}, []

    def visit(node, stack):
        state[node] = "open"
        for nxt in graph[node]:
            if state.get(nxt) == "open":
                cycle.append(stack[stack.index(nxt) :] + [nxt])
            elif nxt not in state:
                visit(nxt, stack + [nxt])
        state[node] = "done"

    for node in graph:
        if node not in state:
            visit(node, [node])
    assert not cycle, " → ".join(cycle[0])


def test_the_import_reader_sees_absolute_and_relative_imports(tmp_path):
    """The rules above are only as good as this reader: a model module importing measurement code is seen."""
    path = tmp_path / "fake.py"
    path.write_text("from ddpm.measure.probe import Probe\nfrom . import unet\nimport config\n")
    names = imports(str(path), "ddpm.model.fake")
    assert {"ddpm.measure.probe", "ddpm.model.unet", "config"} <= set(names)
    assert owner("ddpm.measure.probe.Probe", modules()) == "ddpm.measure.probe"
