"""The one error type a user sees: a single line that names the problem and the fix."""
import difflib
import math
import reprlib

from .escape import terminal_text


class ChainruleError(Exception):
    """Bad input. The command line prints the message alone and exits with code 2.

    The message is kept on one line whatever user text it quotes: control and invisible
    characters are shown as escapes (``\\n``, ``\\x1b``)."""

    def __init__(self, message):
        super().__init__(terminal_text(str(message)))


class _Shown(reprlib.Repr):
    """repr() cut short: a few levels of nesting, a few items, short strings and numbers."""

    def __init__(self):
        super().__init__()
        self.maxlevel, self.maxstring, self.maxother, self.maxlong = 3, 120, 60, 40
        self.maxlist = self.maxtuple = self.maxdict = self.maxset = 4

    def repr_int(self, x, level):
        if x.bit_length() > 128:  # repr() of a huge int is slow, and refused past 4300 digits
            return f"<an integer of about {round(x.bit_length() * math.log10(2))} digits>"
        return super().repr_int(x, level)


_SHOWN = _Shown()


def shown(value) -> str:
    """A user's value as an error message quotes it: repr-escaped (one line), nesting and length bounded."""
    return terminal_text(_SHOWN.repr(value))


def did_you_mean(word, choices) -> str:
    """' (did you mean 'relu'?)' when a choice is close to `word`, else ''."""
    if not isinstance(word, str):
        return ""
    close = difflib.get_close_matches(word, sorted(choices), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def unknown(kind: str, word, choices) -> ChainruleError:
    """The error for a name that is not in a catalogue, listing the valid names."""
    listed = ", ".join(sorted(choices))
    return ChainruleError(f"unknown {kind} {shown(word)}{did_you_mean(word, choices)}; choose one of: {listed}")
