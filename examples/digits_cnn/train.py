"""Train a small CNN on scikit-learn's 8x8 digits, held as 1x8x8 images, with its emitted NumPy module.

    python examples/digits_cnn/train.py

The spec is digits_cnn.toml beside this file (conv-relu-maxpool twice, then a dense softmax layer;
Adam, 30 epochs, batches of 32). The script generates the module with codegen.generate, trains it on
three quarters of the digits and prints the accuracy on the other quarter (about 98.5%) and the time.
The same with the command line: chainrule train examples/digits_cnn/digits_cnn.toml --data digits --val-split 0.25
"""
import time
import types
from pathlib import Path

from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from codegen.emit import generate
from derive import derive

SPEC = Path(__file__).resolve().parent / "digits_cnn.toml"


def emitted_module(spec):
    """The module chainrule emits for ``spec``, imported from its source text."""
    module = types.ModuleType("digits_cnn")
    exec(compile(generate(derive(spec)), "<digits_cnn>", "exec"), module.__dict__)
    return module


def main():
    cnn = emitted_module(SPEC)
    X, y = load_digits(return_X_y=True)
    images = (X / 16).reshape(-1, 1, 8, 8)  # (N, channels, height, width), as torch.nn.Conv2d takes them
    X_train, X_test, y_train, y_test = train_test_split(images, y, test_size=0.25, random_state=0, stratify=y)
    params = cnn.init_params(seed=0)
    start = time.perf_counter()
    cnn.train(params, X_train, y_train, verbose=False)
    seconds = time.perf_counter() - start
    print(f"test accuracy: {(cnn.predict(params, X_test) == y_test).mean():.1%} after {seconds:.1f}s of training")


if __name__ == "__main__":
    main()
