"""The project's own notes pasted back: ``chainrule check SPEC --file generated/NAME.md`` (or ``.tex``) on every
gallery spec the checker reads finds no line different and none it cannot read (each is correct or skipped with a
reason), and every numbered gradient step the notes print checks as correct."""
import functools
import re
from pathlib import Path

import pytest

from derive import derive
from derive.check import Conventions
from derive.check.document import Skipped, checked, read_document
from derive.errors import ChainruleError

GALLERY = Path(__file__).resolve().parent.parent / "generated"
SPECS = sorted((GALLERY / "specs").glob("*.toml"))
# A numbered gradient step of the notes, one display line: \frac{\partial L}{\partial W_{2}} = ..., \delta_{3} = ...,
# \Delta_{3.1} = ..., tagged in Markdown (\tag{7}), the line after \begin{equation} in LaTeX; not the worked
# example's, in numbers (a matrix)
GRADIENT = re.compile(r"(?:\\frac\{\\partial L\}\{\\partial |\\delta_\{|\\Delta_\{)(?:(?!\\begin)[^$])*$")
# The specs chainrule check reads today, at least (it refuses batch norm and the CNN with a reason); the round trip
# runs on every spec it reads
READ = {"binary", "digits", "gru_classifier", "huber_tanh", "layernorm", "lstm_lm", "mish", "residual", "sigmoid_sse",
        "simple_nn", "tiny_transformer"}


@functools.lru_cache(maxsize=None)  # one per spec, for its Markdown and its LaTeX notes
def _checker(spec: Path):
    try:
        return Conventions(derive(str(spec)), "auto")  # as chainrule check builds it
    except ChainruleError:
        return None


def _verdicts(spec: Path, suffix=".md") -> list:
    """(line, verdict, detail) for each equation of the spec's notes, as check --file reads them."""
    notes = (GALLERY / spec.stem).with_suffix(suffix).read_text(encoding="utf-8")
    out = []
    for item, result in checked(_checker(spec), read_document(notes)):
        if isinstance(item, Skipped):
            out.append((item.line, "skipped", item.reason))
        elif isinstance(result, ChainruleError):
            out.append((item.line, "not understood", str(result)))
        else:
            out.append((item.line, "correct" if result.equal else "different", result.report()))
    return out


def test_the_checker_reads_the_gallery_specs_it_should():
    assert {spec.stem for spec in SPECS if _checker(spec) is not None} >= READ


def _steps(lines: list) -> set:
    """The line numbers of the notes' numbered gradient steps."""
    return {number for number, text in enumerate(lines, 1) if GRADIENT.match(text) and (
        re.search(r"\\tag\{\d+\}$", text) or number > 1 and lines[number - 2].startswith(r"\begin{equation}"))}


@pytest.mark.parametrize("suffix", [".md", ".tex"])
@pytest.mark.parametrize("spec", [s for s in SPECS if _checker(s) is not None], ids=lambda s: s.stem)
def test_the_notes_pasted_back_are_correct_or_skipped_with_a_reason(spec, suffix):
    found = _verdicts(spec, suffix)
    wrong = [(line, verdict, detail) for line, verdict, detail in found if verdict in ("different", "not understood")]
    assert not wrong, wrong
    assert all(detail for _, verdict, detail in found if verdict == "skipped")
    steps = _steps((GALLERY / spec.stem).with_suffix(suffix).read_text(encoding="utf-8").splitlines())
    correct = {line for line, verdict, _ in found if verdict == "correct"}
    assert len(steps) >= 6 and steps <= correct, sorted(steps - correct)


def test_the_worked_example_update_and_the_shape_annotations_are_skipped_with_their_reasons():
    found = {line: (verdict, detail) for line, verdict, detail in _verdicts(GALLERY / "specs" / "simple_nn.toml")}
    lines = (GALLERY / "simple_nn.md").read_text(encoding="utf-8").splitlines()
    update = next(n for n, text in enumerate(lines, 1) if text.startswith(r"W_{1} \leftarrow \begin{bmatrix}"))
    assert found[update][0] == "skipped" and "an update to numbers" in found[update][1]
    shape = next(n for n, text in enumerate(lines, 1) if r"Dimensions: $(2 \times 2)(2 \times 1)" in text)
    assert found[shape] == ("skipped", "a shape annotation (the sizes of a step's factors), not a quantity")
    optimizer = next(n for n, text in enumerate(lines, 1) if text.startswith(r"\theta_t = "))
    assert found[optimizer] == ("skipped", "an optimizer's update rule; chainrule check reads gradients")


@pytest.fixture(scope="module")
def lstm():
    return _checker(GALLERY / "specs" / "lstm_lm.toml")


@pytest.fixture(scope="module")
def gru():
    return _checker(GALLERY / "specs" / "gru_classifier.toml")


@pytest.mark.parametrize("wrt, grad, mistake", [
    (r"\frac{\partial L}{\partial W_{hh,2}}", r"\sum_{t=1}^{T} \delta_{t} h_{t}^{\top}", "h_t where h_(t-1) belongs"),
    (r"\delta_{3}", r"\hat{y} - y", "a constant factor"),  # the loss is the mean over the T steps: 1/20
    (r"\frac{\partial L}{\partial h_{2}}", r"\left[W_{3} \delta_{3,t}\right]_{t=1}^{T}", ""),
    (r"\frac{\partial L}{\partial W_{3}}", r"\sum_{t=1}^{T} \delta_{3,t} h_{2,t-1}^{\top}", ""),
])
def test_a_wrong_line_in_the_notes_naming_is_different(lstm, wrt, grad, mistake):
    result = lstm.check(wrt, grad)
    assert not result.equal and mistake in result.report(), result.report()


def test_the_layer_number_is_the_layer_and_a_step_number_stays_a_step(gru):
    # gru_classifier outputs h_T alone: h_2 (layer 2) is h_T, but h_{1} in the same line is step 1's state
    assert gru.check(r"\frac{\partial L}{\partial W_{3}}", r"\delta_{3} h_{2}^{\top}").equal
    assert not gru.check(r"\frac{\partial L}{\partial W_{3}}", r"\delta_{3} h_{1}^{\top}").equal
    assert gru.check(r"\frac{\partial L}{\partial W_{ih,2}}", r"\sum_{t=1}^{T} \delta^{x}_{t} e_{1,t}^{\top}").equal


def test_a_weight_named_with_another_layer_number_is_refused_with_the_right_one(lstm):
    with pytest.raises(ChainruleError, match=r"layer 3's, but the recurrent layer is layer 2: W_\{ih,2\}"):
        lstm.check(r"\frac{\partial L}{\partial W_{ih,3}}", r"\sum_{t=1}^{T} \delta_{t} e_{1,t}^{\top}")


@pytest.mark.parametrize("wrt, grad, quoted", [
    (r"\delta_t", r"\sum_t \delta_t (", r"'\sum_t \delta_t (' ends too early"),
    ("dh_t", r"W_{hh}^T \delta_{T} +", r"'W_{hh}^T \delta_{T} +' ends too early"),
])
def test_a_message_quotes_the_text_as_written_not_as_the_reader_rewrote_it(lstm, wrt, grad, quoted):
    with pytest.raises(ChainruleError) as err:
        lstm.check(wrt, grad)
    assert str(err.value) == quoted  # not '\sumtime \delta_t (', not \delta_{last}
