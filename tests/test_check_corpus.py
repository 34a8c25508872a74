"""The corpus of real derivations (tests/corpus/derivations/*.toml): every equation, read verbatim
from its source, gets the verdict it is owed: correct, wrong, or skipped with a reason."""
import functools
import json
import pathlib
import sys

import pytest

from derive import derive
from derive.check import Checker
from derive.check.document import Skipped, checked, read_document
from derive.errors import ChainruleError

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

CORPUS = pathlib.Path(__file__).parent / "corpus" / "derivations"


def _entries():
    for path in sorted(CORPUS.glob("*.toml")):
        data = tomllib.loads(path.read_text(encoding="utf-8"))
        for number, entry in enumerate(data["equation"], start=1):
            marks = [pytest.mark.xfail(strict=True, reason=entry["xfail"])] if "xfail" in entry else []
            yield pytest.param(data, entry, id=f"{path.stem}-{number}", marks=marks)


@functools.lru_cache(maxsize=None)
def _checker(spec: str, convention: str) -> Checker:
    if spec.startswith("{"):  # a recurrent network has no inline form: its spec is a TOML table
        return Checker(derive(json.loads(spec)), convention)
    return Checker(derive(spec if "->" in spec else CORPUS / spec), convention)  # a spec file beside the corpus


def verdicts(data: dict, entry: dict) -> list:
    """(verdict, detail) for each equation the reader finds in the entry's text, in order."""
    spec = entry.get("spec", data["spec"])  # an inline spec, or a TOML table (a recurrent network)
    checker = _checker(json.dumps(spec, sort_keys=True) if isinstance(spec, dict) else spec,
                       entry.get("convention", data["convention"]))
    out = []
    for item, result in checked(checker, read_document(entry["text"])):  # as chainrule check --file reads them
        if isinstance(item, Skipped):
            out.append(("skipped", item.reason))
        elif isinstance(result, ChainruleError):
            out.append(("refused", str(result)))
        else:
            out.append(("correct", "") if result.equal else ("wrong", result.report()))
    return out


@pytest.mark.parametrize("data, entry", list(_entries()))
def test_each_corpus_equation_gets_its_verdict(data, entry):
    found = verdicts(data, entry)
    assert [v for v, _ in found] == entry["expect"], found
    for verdict, detail in found:
        if verdict == "skipped":
            assert detail, "a skipped equation must say why"
        if verdict == "wrong":
            assert entry.get("mistake", "") in detail, detail


def test_the_corpus_is_large_and_varied():
    entries = [p.values for p in _entries()]
    equations = sum(len(entry["expect"]) for _, entry in entries)
    conventions = {entry.get("convention", data["convention"]) for data, entry in entries}
    assert equations >= 60 and len({data["source"] for data, _ in entries}) >= 6 and len(conventions) >= 3
    for _, entry in entries:
        assert set(entry["expect"]) <= {"correct", "wrong", "skipped"}
        assert "mistake" not in entry or "wrong" in entry["expect"]
