"""The package's layout: folders by layer, data flowing one way.

Every module belongs to a *unit*: a subpackage (``mtdlearn/basis/``, ...) or
a top-level module (``base.py``, ...).  Each unit sits on a layer, and a
module may import only

- units on lower layers, and
- modules of its own unit (imports inside a subpackage, without a cycle).

Function-level imports count too.  This keeps the package free of import
cycles and makes the picture of the layers on the design page
(``docs/design.rst``, "Layout") a checked fact: the test below regenerates
that picture from :data:`LAYERS` and finds it on the page.
"""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "mtdlearn"

#: The layers, bottom first: each a list of units, none of which may import
#: another unit of the same layer.
LAYERS = [
    ("utilities", ["_validation"]),
    ("executor", ["_parallel", "progress"]),
    ("images", ["basis", "resolution"]),
    ("image formation", ["imaging"]),
    ("measurements", ["data"]),
    ("patch likelihood", ["likelihood"]),
    ("starts and errors", ["initializers", "metrics"]),
    ("checkpoints", ["checkpoint"]),
    ("the loop", ["base"]),
    ("estimators", ["em", "autocorrelation", "half_sets"]),
    ("presentation", ["plotting", "experiments"]),
    ("command line", ["cli"]),
    ("package", ["__init__", "__main__"]),
]
LAYER = {unit: i for i, (_, units) in enumerate(LAYERS) for unit in units}

#: No module may be longer than this (lines in all): one concept per module.
MAX_LINES = 700
#: ... nor hold more lines of code (docstrings, comments and blank lines not
#: counted): more is more than one layer's work.
MAX_CODE_LINES = 400


def _modules():
    """Dotted names (below ``mtdlearn``) of every module of the package."""
    names = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
        if len(parts) > 1 and parts[-1] == "__init__":
            parts = parts[:-1]
        names[".".join(parts)] = path
    return names


MODULES = _modules()


def _is_package(name):
    return MODULES[name].name == "__init__.py" and name != "__init__"


def unit_of(name):
    """The unit of a module: its subpackage, or itself at the top level."""
    return name.split(".")[0]


def _resolve(name, node):
    """Absolute dotted names (below ``mtdlearn``) an import node brings in."""
    if isinstance(node, ast.Import):
        return [a.name.split(".", 1)[1] if "." in a.name else "__init__"
                for a in node.names if a.name.split(".")[0] == "mtdlearn"]
    if node.level == 0:
        if not node.module or node.module.split(".")[0] != "mtdlearn":
            return []
        base = node.module.split(".")[1:]
    else:
        package = name.split(".") if _is_package(name) else name.split(".")[:-1]
        if name == "__init__" or name == "__main__":
            package = []
        base = package[:len(package) - (node.level - 1)] + (
            node.module.split(".") if node.module else [])
    if not base:
        return [a.name for a in node.names]
    found = ".".join(base)
    if node.module is None:  # from . import x: x may be a module
        return [f"{found}.{a.name}" if f"{found}.{a.name}" in MODULES else found
                for a in node.names]
    return [found]


def imports(name):
    """mtdlearn modules a module imports anywhere (function-level too)."""
    tree = ast.parse(MODULES[name].read_text())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            found.update(_resolve(name, node))
    return found - {name}


def test_every_unit_has_a_layer():
    assert {unit_of(m) for m in MODULES} == set(LAYER)


@pytest.mark.parametrize("name", sorted(MODULES))
def test_imports_go_down_the_layers(name):
    unit = unit_of(name)
    for target in sorted(imports(name)):
        assert target in MODULES or unit_of(target) in LAYER, f"{name} imports unknown {target}"
        other = unit_of(target)
        assert other == unit or LAYER[other] < LAYER[unit], (
            f"{name} (layer {LAYER[unit]}, {unit}) imports {target} "
            f"(layer {LAYER[other]}, {other}): imports go down the layers")


def test_no_import_cycle():
    graph = {m: {t for t in imports(m) if t in MODULES} for m in MODULES}
    state = {}

    def visit(m, path):
        if state.get(m) == "done":
            return
        assert state.get(m) != "active", "import cycle: " + " -> ".join(path + [m])
        state[m] = "active"
        for n in sorted(graph[m]):
            # a subpackage's __init__ importing its own modules is how it
            # re-exports them; the modules never import their __init__
            visit(n, path + [m])
        state[m] = "done"

    for m in sorted(MODULES):
        visit(m, [])


def layers_picture():
    """The picture of the layers, as the design page shows it (top first)."""
    width = max(len(title) for title, _ in LAYERS)
    lines = []
    for i, (title, units) in reversed(list(enumerate(LAYERS))):
        shown = "   ".join(f"{u}/" if (PACKAGE / u).is_dir() else f"{u}.py" for u in units)
        lines.append(f"{i:>2}  {title:<{width}}  {shown}")
    return "\n".join(lines)


def test_design_page_shows_the_layers():
    page = (ROOT / "docs" / "design.rst").read_text()
    picture = "\n".join("   " + line for line in layers_picture().splitlines())
    assert picture in page, "docs/design.rst's picture of the layers is out of date:\n" + picture


def _code_lines(source):
    """Lines holding code: not blank, not comments, not in a docstring."""
    docstrings = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            first = node.body[0] if node.body else None
            if (isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant)
                    and isinstance(first.value.value, str)):
                docstrings.update(range(first.lineno, first.end_lineno + 1))
    return sum(1 for i, line in enumerate(source.splitlines(), 1)
               if i not in docstrings and line.strip() and not line.strip().startswith("#"))


@pytest.mark.parametrize("name", sorted(MODULES))
def test_modules_stay_small(name):
    source = MODULES[name].read_text()
    n, code = len(source.splitlines()), _code_lines(source)
    assert n <= MAX_LINES, f"{MODULES[name]} has {n} lines"
    assert code <= MAX_CODE_LINES, f"{MODULES[name]} has {code} lines of code"


def test_unit_of_resolves_relative_imports():
    # the resolver itself: what the checks above stand on
    assert "basis.fourier_bessel" in imports("basis._bandlimits")
    assert "data.patches" in imports("likelihood.patch_model")
    assert "_validation" in imports("basis.fourier_bessel")
