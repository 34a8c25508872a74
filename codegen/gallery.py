"""The gallery: ``python -m codegen.gallery`` regenerates everything in ``generated/``.

For each spec ``generated/specs/<name>.toml`` it writes ``generated/<name>.py`` (the NumPy
module), ``<name>.tex`` (the LaTeX notes) and ``<name>.md`` (the Markdown notes). Paths in the
files are relative to the repository, so the output is the same wherever it is run from;
``tests/test_codegen.py`` fails when the committed files differ from fresh output.
"""
import sys
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent
GALLERY = Path("generated")
COMMAND = "python -m codegen.gallery"


def spec_paths(root=ROOT) -> list:
    """The gallery specs, relative to ``root``, sorted by name."""
    return sorted(p.relative_to(root) for p in (root / GALLERY / "specs").glob("*.toml"))


def render(root=ROOT) -> dict:
    """{relative path: text} of every gallery file, freshly generated."""
    from derive.chain import Derivation
    from derive.check import accepted_names
    from derive.spec import from_dict

    from .emit import generate
    from .worked import worked_example
    files = {}
    for spec in spec_paths(root):
        table = tomllib.loads((root / spec).read_text(encoding="utf-8"))
        table.setdefault("name", spec.stem)
        derivation = Derivation(from_dict(table, source=spec.as_posix()))
        module = GALLERY / f"{spec.stem}.py"
        files[module.as_posix()] = generate(derivation, output=module.as_posix())
        names, worked = accepted_names(derivation), worked_example(derivation, files[module.as_posix()])
        files[(GALLERY / f"{spec.stem}.tex").as_posix()] = derivation.latex(names, worked=worked)
        files[(GALLERY / f"{spec.stem}.md").as_posix()] = derivation.markdown(names, worked=worked)
    return files


def main(argv=None) -> int:
    from .files import write_atomic
    for relative, text in render().items():
        path = ROOT / relative
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            write_atomic(path, text)
            print(f"wrote {relative}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
