"""The shape of ``src/vaelab``: layers that point one way, no import cycles, files a reader can hold.

Imports are read with ``ast`` from the source text (nothing is imported, so no side effects and no
optional extras needed). Every import counts, also one inside a function or under ``TYPE_CHECKING``:
a deferred import still makes the importing module depend on the imported one.

``LAYERS`` is the one statement of the layering; docs/architecture.md draws it, and
``python tests/test_architecture.py`` prints that drawing again (a test below checks the two agree).
"""

from __future__ import annotations

import ast
import functools
import itertools
import sys
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGE_DIR = REPO / "src" / "vaelab"
DOC = REPO / "docs" / "architecture.md"

# Bottom to top. A module may import modules of its own layer or of a layer below, never above.
# Members are the names directly under src/vaelab/ (a package or a module); "vaelab" is the package's
# own __init__.py. Within a layer the members may import each other; the cycle test keeps that honest.
LAYERS: list[tuple[str, tuple[str, ...], str]] = [
    (
        "base",
        ("vaelab", "errors", "io", "runtime", "perf"),
        "user-error types, atomic files, images and metrics on disk, device and seeds, speed",
    ),
    ("data", ("data",), "datasets, decoding, caching, batching"),
    ("models", ("models",), "the VAE and its parts, configs and registry"),
    ("objectives", ("objectives",), "ELBO, IWAE, beta-TCVAE over the model's output"),
    ("generation", ("generation", "export"), "using a trained model: sampling, latent walks, ONNX"),
    ("evaluation", ("evaluation",), "measuring a trained model (its sample quality uses generation)"),
    ("training", ("training", "config"), "the training run and its configuration (uses evaluation)"),
    ("serve", ("serve",), "the web app and REST API"),
    ("cli", ("cli", "__main__"), "the vaelab command"),
]

MAX_LINES = 300
# The two modules everything else hangs on are held to a tighter limit, so they stay readable whole.
TIGHTER_LIMITS = {"models/vae.py": 250, "training/trainer.py": 250}


def layer_of(module: str) -> int:
    """Index in ``LAYERS`` of a dotted module name (``vaelab.models.vae`` -> the models layer)."""
    parts = module.split(".")
    top = parts[1] if len(parts) > 1 else "vaelab"
    for index, (_, members, _) in enumerate(LAYERS):
        if top in members:
            return index
    raise KeyError(module)


@functools.cache
def modules() -> dict[str, Path]:
    """Every module of the package: dotted name -> file (a package is its ``__init__.py``)."""
    found = {}
    for path in sorted(PACKAGE_DIR.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE_DIR.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def _resolve(name: str, known: dict[str, Path]) -> str | None:
    """The longest prefix of ``name`` that is a module of the package (``a.b.func`` -> ``a.b``)."""
    while name and name not in known:
        name = name.rpartition(".")[0]
    return name or None


def imports_of(module: str, known: dict[str, Path]) -> Iterator[tuple[str, int]]:
    """(imported vaelab module, line) for each import in ``module``'s source.

    ``from P import x`` depends on the submodule ``P.x`` when there is one, else on ``P`` itself.
    A submodule's implicit import of its parent packages is not an edge (Python runs them first).
    """
    path = known[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
        else:
            continue
        for target in targets:
            resolved = _resolve(target, known) if target.split(".")[0] == "vaelab" else None
            if resolved and resolved != module:
                yield resolved, node.lineno


def import_graph() -> dict[str, dict[str, int]]:
    """module -> {imported module: first line importing it}."""
    known = modules()
    graph: dict[str, dict[str, int]] = {}
    for module in known:
        edges = graph.setdefault(module, {})
        for target, line in imports_of(module, known):
            edges.setdefault(target, line)
    return graph


def _rel(module: str) -> str:
    return str(modules()[module].relative_to(REPO))


def _top_level_names() -> set[str]:
    """The names directly under src/vaelab/: its packages and modules ("vaelab" for ``__init__.py``)."""
    names = {p.name for p in PACKAGE_DIR.iterdir() if (p / "__init__.py").is_file()}
    names |= {p.stem for p in PACKAGE_DIR.glob("*.py")}
    return {"vaelab" if n == "__init__" else n for n in names}


def test_every_top_level_name_has_one_layer():
    placed = [m for _, members, _ in LAYERS for m in members]
    unplaced = sorted(_top_level_names() - set(placed))
    stale = sorted(set(placed) - _top_level_names())
    twice = sorted({m for m in placed if placed.count(m) > 1})
    assert not unplaced, f"src/vaelab/ has {unplaced} in no layer: place them in LAYERS ({__file__})"
    assert not stale, f"LAYERS names {stale}, which src/vaelab/ no longer has"
    assert not twice, f"LAYERS places {twice} in more than one layer"


def test_layers_point_one_way():
    graph = import_graph()
    upward = []
    for module, edges in graph.items():
        for target, line in edges.items():
            if layer_of(target) > layer_of(module):
                src, dst = LAYERS[layer_of(module)][0], LAYERS[layer_of(target)][0]
                upward.append(f"{_rel(module)}:{line}: {module} -> {target} ({src} layer imports {dst})")
    assert not upward, "imports that point up the layers:\n" + "\n".join(sorted(upward))


def _cycles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each as one cycle."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, {}):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                components.append(component)

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10 * len(graph) + 100))
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return [_one_cycle(graph, set(c)) for c in components]


def _one_cycle(graph: dict[str, dict[str, int]], component: set[str]) -> list[str]:
    """A shortest path start -> ... -> start inside a strongly connected ``component``."""
    start = min(component)
    paths = {start: [start]}
    frontier = [start]
    while frontier:
        reached = []
        for v in frontier:
            for w in sorted(graph[v]):
                if w == start:
                    return [*paths[v], start]
                if w in component and w not in paths:
                    paths[w] = [*paths[v], w]
                    reached.append(w)
        frontier = reached
    return sorted(component)  # not reached: every module of a component lies on a cycle through start


def test_the_cycle_finder_names_a_cycle_and_ignores_a_chain():
    graph = {"a": {"b": 1}, "b": {"c": 2}, "c": {"a": 3, "d": 4}, "d": {}, "e": {"d": 5}}
    assert _cycles(graph) == [["a", "b", "c", "a"]]
    assert _cycles({"a": {"b": 1}, "b": {}}) == []
    assert layer_of("vaelab.models.vae") < layer_of("vaelab.training.trainer") < layer_of("vaelab.cli")


def test_no_import_cycles_between_modules():
    graph = import_graph()
    messages = []
    for cycle in _cycles(graph):
        steps = [f"{_rel(a)}:{graph[a][b]}: {a} -> {b}" for a, b in itertools.pairwise(cycle)]
        messages.append("cycle:\n  " + "\n  ".join(steps))
    assert not messages, "\n".join(messages)


def _line_count(path: Path) -> int:
    return len(path.read_bytes().decode("utf-8", errors="replace").splitlines())


def test_no_file_in_src_is_over_300_lines():
    too_long = [
        f"{path.relative_to(REPO)}: {n} lines (limit {MAX_LINES})"
        for path in sorted((REPO / "src").rglob("*"))
        if path.is_file()
        and "__pycache__" not in path.parts
        and not any(part.endswith(".egg-info") for part in path.parts)
        and (n := _line_count(path)) > MAX_LINES
    ]
    assert not too_long, "files over the limit:\n" + "\n".join(too_long)


def test_the_model_and_the_training_loop_stay_under_250_lines():
    too_long = [
        f"src/vaelab/{name}: {n} lines (must be under {limit})"
        for name, limit in TIGHTER_LIMITS.items()
        if (n := _line_count(PACKAGE_DIR / name)) >= limit
    ]
    assert not too_long, "\n".join(too_long)


def _shown(member: str) -> str:
    if member == "vaelab":
        return "__init__.py"
    return f"{member}/" if (PACKAGE_DIR / member).is_dir() else f"{member}.py"


def mermaid() -> str:
    """The layer table as a Mermaid flowchart, top layer first: each box names its layer, what it
    holds and its files under src/vaelab/; an arrow points from a layer to the one below, which it
    may import (and so, through it, every layer further down)."""
    lines = ["```mermaid", "flowchart TD"]
    for index, (name, members, what) in reversed(list(enumerate(LAYERS))):
        files = ", ".join(_shown(m) for m in members)
        lines.append(f'    L{index}["{name}: {files}<br/>{what}"]')
    lines += [f"    L{i} --> L{i - 1}" for i in range(len(LAYERS) - 1, 0, -1)]
    lines.append("```")
    return "\n".join(lines)


def test_docs_draw_the_layer_table():
    assert mermaid() in DOC.read_text(), (
        f"{DOC.relative_to(REPO)} no longer shows LAYERS: paste the output of "
        "'python tests/test_architecture.py' into it"
    )


if __name__ == "__main__":
    print(mermaid())
