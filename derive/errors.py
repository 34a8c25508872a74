"""The one error type a user sees: a single line that names the problem and the fix."""
import difflib


class ChainruleError(Exception):
    """Bad input. The command line prints the message alone and exits with code 2."""


def did_you_mean(word: str, choices) -> str:
    """' (did you mean 'relu'?)' when a choice is close to `word`, else ''."""
    close = difflib.get_close_matches(str(word), sorted(choices), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def unknown(kind: str, word, choices) -> ChainruleError:
    """The error for a name that is not in a catalogue, listing the valid names."""
    listed = ", ".join(sorted(choices))
    return ChainruleError(f"unknown {kind} '{word}'{did_you_mean(word, choices)}; choose one of: {listed}")
