"""Every size limit of chainrule, in one place: the README's table and the errors quote these.

Each is chosen so that ``derive``, ``generate`` and ``check`` finish in seconds within it; input
over a limit is a one-line ChainruleError naming the limit.
"""
import os
import stat

from .errors import ChainruleError

#: A formula (custom activation or loss): characters, syntax-tree nodes and nesting depth.
FORMULA_CHARS = 500
FORMULA_NODES = 80
FORMULA_DEPTH = 12
#: ``**`` takes a number as exponent of at most this size (a base that is a number may take any
#: exponent without ``**``), so no power tower and no huge polynomial.
POWER_EXPONENT = 16
#: A number in a formula: at most this many characters and this size.
NUMBER_CHARS = 20
NUMBER_SIZE = 1e6
#: A constant part of a formula once folded (``exp(20)``, ``9**9``): at most this size, so it is
#: finite in float32 too.
FOLDED_SIZE = 1e30
#: Optional nicer forms (SymPy's simplify, f' in terms of f) are only sought for a derivative
#: with at most this many operations; above it the derivative is used as SymPy gives it.
SIMPLIFY_OPS = 60

#: A network: input features, units of a layer, layers, and weights plus biases in all.
#: derive and generate do not depend on the widths (depth 256 takes them about 1 s);
#: PARAMETERS bounds the memory of the emitted module's parameters (16 million float64: 128 MB).
#: An image counts its C·H·W features, so a CIFAR-sized net (3×32×32 in, 16×32×32 after its first
#: convolution) needs 16 384 of them.
INPUTS = 65536
UNITS = 65536
LAYERS = 256
PARAMETERS = 16_000_000
#: ``check`` and ``check-code`` evaluate every entry at random points (``check`` proves with a symbol
#: per entry only on networks of a few entries): ten layers 1000 wide (10 010 000) check in about
#: 3 s and 1 GB.
CHECK_PARAMETERS = 10_100_000
#: ``check`` reads an attention layer's own names (Q, K, S_h, dQ, ...) when its positions times features
#: (T·E) are at most this: it evaluates them with SymPy's floats; at 64 a check takes a few seconds.
CHECK_ATTENTION = 64

#: The macros a ``check --file`` derivation may define (\newcommand, \def) and the expansions they may
#: make in all and inside one another, so a macro that expands to itself, or to many copies of
#: another, stops at once.
MACROS = 100
MACRO_EXPANSIONS = 5000
MACRO_NESTING = 20

#: A spec file or a ``check --file`` derivation: bytes.
FILE_BYTES = 1 << 20


def read_text(path, what: str, hint: str = "") -> str:
    """The text of the regular file ``path`` of at most FILE_BYTES bytes (UTF-8), else a
    ChainruleError naming ``what`` (a missing file's error ends with ``hint``).

    Opened without blocking and checked with fstat before reading, so a FIFO, a device or a
    directory is refused without a read that never ends; at most FILE_BYTES + 1 bytes are read.
    """
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        raise ChainruleError(f"no {what} '{path}'{hint}") from None
    except OSError as err:
        raise ChainruleError(f"cannot read {what} '{path}': {err.strerror}") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise ChainruleError(f"{what} '{path}' is not a regular file; give a text file")
        with os.fdopen(fd, "rb", closefd=False) as handle:
            data = handle.read(FILE_BYTES + 1)
    except OSError as err:
        raise ChainruleError(f"cannot read {what} '{path}': {err.strerror}") from None
    finally:
        os.close(fd)
    if len(data) > FILE_BYTES:
        raise ChainruleError(f"{what} '{path}' is larger than the limit of {FILE_BYTES} bytes (1 MiB)")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise ChainruleError(f"cannot read {what} '{path}': it is not UTF-8 text") from None
