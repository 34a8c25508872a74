"""Issue 10, item 1: text from a user is data in every output.

Hostile strings in every user-controlled field (network name, description, spec path, output
path and flags of the regenerate command, loss formula, activation name) never change the code of
the emitted module, never add a LaTeX command, math or HTML to the notes and never reach the
terminal as control characters. One small derivation is reused: only its text fields vary.
"""
import ast
import copy
import doctest
import functools
import re
import shlex
import shutil
import subprocess
import sys
import unicodedata
import zlib
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st

from codegen.emit import generate
from derive import derive
from derive.errors import ChainruleError
from derive.escape import python_docstring

SPEC = {"name": "tiny", "description": "d", "network": {
    "inputs": 2, "layers": [{"units": 2, "activation": {"formula": "2*z", "name": "act"}}, {"units": 1}],
    "loss": {"formula": "(yhat - y)**2"}}}
#: Benign placeholders for the fields; a hostile output must be the benign one with these replaced.
PLACE = dict(name="PNAME", description="PDESC", source="PSOURCE", formula="PFORMULA", act="PACT")
OUTPUT, FLAG = "POUT", "PFLAG"

PIECES = ['"""', '"', "'''", "'", "\\", "\n", "\r\n", "\r", "\t", "#", "\\input{/etc/passwd}", "$", "$$",
          "\\(", "\\[", "<script>alert(1)</script>", "<!--", "&amp;", "\x1b[2J", "\x1b]0;title\x07", "\u2028",
          "\u2029", "\x85", "\x00", "\x0c", "\ud800", "\u202e", "\ufeff", ">>> import os", "\n  >>> 1/0",
          "\\N{", "\\x", "^^5cinput", "%", "&", "~", "{", "}", "_", "*", "`", "|", "[x](javascript:alert(1))",
          "\\write18{touch pwned}", "\\catcode`\\@=11", "\\def\\x{}", "\\openin1=/etc/passwd",
          "\\include{/etc/passwd}", "x", " ", "é"]
hostile = st.lists(st.sampled_from(PIECES) | st.text(min_size=1, max_size=3), min_size=1, max_size=6).map("".join)
fields = dict(name=hostile, description=hostile, source=hostile, formula=hostile, act=hostile)
#: An activation's name is an identifier (make_activation refuses others), which the notes also print
#: inside the checker's list of names and in the steps' reasons: any identifier, unicode included.
identifier = st.from_regex(r"[^\W\d]\w{0,8}", fullmatch=True).filter(str.isidentifier)
note_fields = dict(fields, act=identifier)
#: What no user text may add: control, format, separator, surrogate, private and unassigned characters.
HIDDEN = {"Cc", "Cf", "Zl", "Zp", "Cs", "Co", "Cn"}
FORBIDDEN = {r"\input", r"\include", r"\openin", r"\openout", r"\write", r"\immediate", r"\catcode", r"\def",
             r"\edef", r"\gdef", r"\let", r"\csname", r"\read", r"\special"}
#: The commands LaTeX escaping writes for special characters: the only ones user text may add.
ESCAPES = {r"\textbackslash", r"\textless", r"\textgreater", r"\textbar", r"\textasciitilde",
           r"\{", r"\}", r"\$", r"\&", r"\#", r"\^", r"\_", r"\%"}


@functools.lru_cache(maxsize=None)
def base():
    return derive(SPEC)


def with_text(name, description, source, formula, act):
    """The base derivation with the given text fields (its math unchanged)."""
    derivation = copy.copy(base())
    net = derivation.network
    first = net.layers[0]
    layers = (replace(first, activation=replace(first.activation, name=act)),) + net.layers[1:]
    derivation.network = replace(net, name=name, description=description, source=source, layers=layers,
                                 loss=replace(net.loss, formula=formula))
    return derivation


@functools.lru_cache(maxsize=None)
def benign():
    """(module source, tex, markdown, text) of the placeholders."""
    derivation = with_text(**PLACE)
    return (generate(derivation, output=OUTPUT, flags=[FLAG]), derivation.latex(), derivation.markdown(),
            derivation.text())


def visible(text: str) -> bool:
    """No character of ``text`` but newlines is hidden (control, format, separator...)."""
    return all(c == "\n" or unicodedata.category(c) not in HIDDEN for c in text)


def tex_tokens(tex: str) -> list:
    r"""The .tex as TeX reads it: ``\name``, ``\`` + one character, or one character."""
    return re.findall(r"\\(?:[A-Za-z@]+|.)|.", tex, re.DOTALL)


def tex_commands(tex: str) -> set:
    return {t for t in tex_tokens(tex) if t.startswith("\\")}


def undefused(doc: str) -> str:
    """A docstring with the backslash that keeps doctest off a ``>>>`` line taken out."""
    return doc.replace("\\>>>", ">>>")


@settings(max_examples=40, deadline=None)
@given(output=hostile, flags=st.lists(hostile, max_size=2), **fields)
def test_hostile_text_never_changes_the_emitted_code(output, flags, **text):
    source = generate(with_text(**text), output=output, flags=flags)
    reference = benign()[0]
    tree, ref = ast.parse(source), ast.parse(reference)
    # the same statements, one by one: no text became code (a comment is not in the tree)
    assert ast.dump(ast.Module(tree.body[1:], [])) == ast.dump(ast.Module(ref.body[1:], []))
    # and no text became a line of its own: the lines are the benign ones, the activation's comment aside
    lines, ref_lines = source.splitlines()[tree.body[0].end_lineno:], reference.splitlines()[ref.body[0].end_lineno:]
    assert len(lines) == len(ref_lines)
    for line, ref_line in zip(lines, ref_lines):
        code, comment, name = ref_line.partition("# PACT")
        assert line.startswith(code + comment[:2]) if name == "" and comment else line == ref_line
    assert visible(source)
    command = " ".join(["chainrule", "generate", shlex.quote(text["source"])]
                       + (["-o", shlex.quote(Path(output).as_posix())] if output else []) + [shlex.quote(f) for f in flags])
    expected = ast.get_docstring(ref, clean=False).replace(f"chainrule generate PSOURCE -o {OUTPUT} {FLAG}", command)
    for key in ("name", "act", "source", "description"):
        expected = expected.replace(PLACE[key], text[key])
    doc = ast.get_docstring(tree, clean=False)
    assert undefused(doc) == undefused(expected)
    assert doctest.DocTestParser().get_examples(doc) == []


@settings(max_examples=200, deadline=None)
@given(st.text(st.characters(blacklist_categories=())), st.sampled_from(["", "Spec: ", "\n"]))
def test_docstring_escape_round_trips_any_text(text, around):
    """Any text, surrogates and NUL included, between the template's words and its closing quotes."""
    literal = '"""' + around + python_docstring(text) + around + '"""'
    assert ast.literal_eval(literal) == around + re.sub(r"(?m)^( *)>>>", r"\1\\>>>", text) + around


@settings(max_examples=40, deadline=None)
@given(**note_fields)
def test_hostile_text_adds_no_latex_command_math_or_line(**text):
    tex, reference = with_text(**text).latex(), benign()[1]
    commands = tex_commands(tex)
    assert not commands & FORBIDDEN
    assert commands - tex_commands(reference) <= ESCAPES
    assert tex_tokens(tex).count("$") == tex_tokens(reference).count("$")  # user text never opens math
    assert "^^" not in tex  # TeX's ^^5c would be a backslash
    assert visible(tex) and len(tex.splitlines()) == len(reference.splitlines())


@settings(max_examples=40, deadline=None)
@given(**note_fields)
def test_hostile_text_adds_no_html_math_or_control_characters(**text):
    derivation = with_text(**text)
    md, reference = derivation._repr_markdown_(), benign()[2]
    bare = re.sub(r"&(?:amp|lt|gt|#\d+);", "", md)  # character references print as text
    for char in "<>&$\\`*[]!|~{}#":  # user text adds no HTML, math or Markdown syntax
        assert bare.count(char) == reference.count(char), char
    assert visible(md) and len(md.splitlines()) == len(reference.splitlines())
    plain = derivation.text()
    assert visible(plain) and len(plain.splitlines()) == len(benign()[3].splitlines())


def write_canary_payloads(canary: Path) -> dict:
    """Every field set to text that, pasted raw, writes ``canary`` when the module is imported."""
    code = f"__import__('pathlib').Path({str(canary)!r}).write_text('ran')"
    closes = f'"""\n{code}\n"""'
    inline = f'#"""+str({code})+"""'
    return dict(name=closes, description=closes, source=inline, formula=inline, act=f"x\n{code}\n#")


def import_in_subprocess(module: Path):
    return subprocess.run([sys.executable, "-c", f"import {module.stem}"], cwd=module.parent,
                          capture_output=True, text=True, timeout=120)


def test_importing_a_module_made_from_hostile_text_runs_nothing(tmp_path):
    canary = tmp_path / "canary"
    text = write_canary_payloads(canary)
    module = tmp_path / "hostile_module.py"
    module.write_text(generate(with_text(**text), output=text["name"], flags=[text["description"]]), encoding="utf-8")
    run = import_in_subprocess(module)
    assert run.returncode == 0, run.stderr
    assert not canary.exists()
    # the payload does run when pasted raw into a docstring, as the template used to paste it
    raw = tmp_path / "raw_module.py"
    raw.write_text(f'"""Spec: {text["name"]}"""\n', encoding="utf-8")
    assert import_in_subprocess(raw).returncode == 0 and canary.exists()


def test_a_spec_file_name_or_formula_cannot_put_code_into_the_module(tmp_path, monkeypatch):
    from codegen.cli import main
    monkeypatch.chdir(tmp_path)
    code = "__import__('pathlib').Path('canary').write_text('ran')"
    spec = tmp_path / f'x"""+str({code})+""".toml'
    spec.write_text('name = "named"\n[network]\ninputs = 2\nlayers = [{ units = 1 }]\nloss = "mse"\n', encoding="utf-8")
    assert main(["generate", str(spec), "-o", "from_file.py"]) == 0
    assert import_in_subprocess(tmp_path / "from_file.py").returncode == 0
    # a comment in a formula: refused (formulas take no comments), or kept inside the docstring
    inline = f'2 -> 1 ; [(yhat - y)**2 #"""+str({code})+"""]'
    try:
        status = main(["generate", inline, "-o", "from_inline.py"])
    except ChainruleError:
        status = 2
    if status == 0:
        assert import_in_subprocess(tmp_path / "from_inline.py").returncode == 0
    assert not (tmp_path / "canary").exists()


def pdflatex(tex: str, folder: Path) -> tuple:
    """(return code, log, PDF text) of ``tex`` compiled without shell escape in ``folder``; the text
    is every string the PDF's pages show, joined (OT1 fonts show \\ { } as n f g)."""
    (folder / "notes.tex").write_text(tex, encoding="utf-8")
    run = subprocess.run(["pdflatex", "-no-shell-escape", "-interaction=nonstopmode", "-halt-on-error", "notes.tex"],
                         cwd=folder, capture_output=True, timeout=120)
    log = (folder / "notes.log").read_text(encoding="latin-1")
    pdf = folder / "notes.pdf"
    text = b""
    if pdf.exists():
        for stream in re.findall(rb"stream\r?\n(.*?)\r?\nendstream", pdf.read_bytes(), re.DOTALL):
            try:
                text += b"".join(re.findall(rb"\(((?:\\.|[^\\)])*)\)", zlib.decompress(stream)))
            except zlib.error:
                pass
    return run.returncode, log, text.decode("latin-1")


@pytest.mark.skipif(shutil.which("pdflatex") is None, reason="pdflatex is not installed")
def test_hostile_latex_compiles_and_reads_no_file(tmp_path):
    passwd = Path("/etc/passwd")
    secret = passwd.read_text().splitlines()[0][:8] if passwd.exists() else "root:x:0"
    attack = (r"\input{/etc/passwd}$\input{/etc/passwd}$^^5cinput{/etc/passwd}\include{/etc/passwd}"
              r"\openin1=/etc/passwd \read1 to\x \write18{touch pwned}\catcode`\@=11\def\y{}%" + "\n\x1b[31m\u2028")
    tex = with_text(name=attack, description=attack, source=attack, formula=f"(yhat - y)**2 #{attack}",
                    act="ǅ_act").latex()
    (tmp_path / "safe").mkdir()
    status, log, text = pdflatex(tex, tmp_path / "safe")
    assert status == 0, log[-2000:]
    assert "(/etc/passwd" not in log and secret not in log and secret not in text
    # the attack is printed as text (the PDF drops spaces between words), and nothing ran
    assert "customloss.ninputf/etc/passwdg" in text and not (tmp_path / "safe" / "pwned").exists()
    # the check sees a file being read: the same notes with the name pasted raw do read it
    (tmp_path / "raw").mkdir()
    _, log, _ = pdflatex(benign()[1].replace("PDESC", r"\input{/etc/passwd}"), tmp_path / "raw")
    assert "(/etc/passwd" in log
