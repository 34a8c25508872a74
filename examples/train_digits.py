"""Train the gallery's digits classifier (generated/specs/digits.toml) with its emitted NumPy module.

    python examples/train_digits.py

Generates the module with codegen.generate, trains it on scikit-learn's 8x8 digits with the
spec's [optimizer] and [training] settings (Adam, 20 epochs, batches of 32), and prints the
test accuracy (about 97%).
"""
import types
from pathlib import Path

from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from codegen.emit import generate
from derive import derive

SPEC = Path(__file__).resolve().parent.parent / "generated" / "specs" / "digits.toml"


def emitted_module(spec):
    """The module chainrule emits for ``spec``, imported from its source text."""
    module = types.ModuleType("digits")
    exec(compile(generate(derive(spec)), "<digits>", "exec"), module.__dict__)
    return module


def main():
    digits = emitted_module(SPEC)
    X, y = load_digits(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(X / 16, y, test_size=0.25, random_state=0)
    params = digits.init_params(seed=0)
    digits.train(params, X_train, y_train, X_val=X_test, T_val=y_test)
    Y, _ = digits.forward(params, X_test)
    print(f"test accuracy: {(Y.argmax(axis=1) == y_test).mean():.1%}")


if __name__ == "__main__":
    main()
