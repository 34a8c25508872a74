"""The layout: no import cycles, the engine prints without the checker, the CLI loads without SymPy."""
import ast
import os
import subprocess
import sys
from pathlib import Path

import derive
from derive.check import accepted_names

ROOT = Path(__file__).resolve().parent.parent
SPEC = "2 -> 2 relu -> 1 ; mse"


def _module_of(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set:
    """The project modules ``path`` imports when it is loaded (its top-level imports, not those inside functions)."""
    package = _module_of(path) if path.name == "__init__.py" else _module_of(path).rpartition(".")[0]
    found = set()
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[:len(package.split(".")) - node.level + 1] + ([base] if base else []))
            found |= {base} | {f"{base}.{a.name}" for a in node.names}
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
    return found


def _graph() -> dict:
    files = {_module_of(p): p for top in ("derive", "codegen") for p in (ROOT / top).rglob("*.py")}
    return {name: {m for m in _imports(path) if m in files and m != name} for name, path in files.items()}


def test_no_import_cycles_and_derive_never_imports_codegen():
    graph = _graph()
    assert {"derive.check.checker", "derive.documents", "codegen.cli"} <= set(graph)
    done, on_path = set(), []

    def visit(name):
        assert name not in on_path, "import cycle: " + " -> ".join(on_path[on_path.index(name):] + [name])
        if name in done:
            return
        on_path.append(name)
        for target in sorted(graph[name]):
            visit(target)
        on_path.pop()
        done.add(name)
    for name in sorted(graph):
        visit(name)
    assert not any(t.startswith("codegen") for n, ts in graph.items() if n.startswith("derive") for t in ts)


def _fresh(code: str) -> str:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                          cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}).stdout


def test_a_derivation_prints_without_importing_the_checker():
    out = _fresh(f"import sys, derive; d = derive.derive({SPEC!r}); d.latex(); d.markdown(); d.text(); "
                 "print(sorted(m for m in sys.modules if m.startswith('derive.check')))")
    assert out.strip() == "[]"


def test_the_notes_point_to_the_checker_and_list_none_of_its_names():
    d = derive.derive(SPEC)
    names = accepted_names(d)
    pointer = "To compare a derivation of your own with these steps, run chainrule check (chainrule check --names " \
              "lists the names it reads)."
    for doc in (" ".join(d.text(names).split()), d.markdown(names), " ".join(d.text().split())):  # text: unwrapped
        assert pointer in doc
        assert "reads these names" not in doc and "Checking your own derivation" not in doc and names[2] not in doc


def test_the_package_derive_check_stays_callable():
    out = _fresh(f"import derive, derive.check.parse; d = derive.derive({SPEC!r}); "
                 r"print(derive.check(d, 'W2', '\\delta_2 h_1^\\top').equal, derive.check.check(d, 'W2', 'delta2').equal)")
    assert out.split() == ["True", "False"]


def test_the_command_line_loads_without_sympy():
    out = _fresh("import sys, codegen.cli; codegen.cli.parser().format_help(); print('sympy' in sys.modules)")
    assert out.strip() == "False"
