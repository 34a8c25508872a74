"""chainrule train and chainrule predict (issue 17): data files, progress, plots, saved weights,
and the emitted module's callback, save, load, predict and evaluate."""
import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from codegen.cli import main
from codegen.train import Progress, module_from_spec, split

from gradcheck import load_module

ROOT = Path(__file__).resolve().parent.parent
REGRESSION = "3 -> 8 tanh -> 1 ; mse"
CLASSES = "3 -> 8 tanh -> 3 softmax ; cross_entropy"
KEYS = {"loss", "val_loss", "accuracy", "val_accuracy", "lr", "grad_norms"}


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def samples(n=120, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 3))
    return X, X @ [1.0, -2.0, 0.5] + 0.1, (X[:, 0] + X[:, 1] > 0).astype(int) + (X[:, 2] > 0.5)


def write_csv(path, X, t, header=True):
    lines = ["a,b,c,price"] if header else []
    lines += [",".join(map(repr, [*row, value])) for row, value in zip(X.tolist(), t.tolist())]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_train_on_a_csv_with_a_header_writes_weights_and_history(tmp_path, capsys):
    X, price, _ = samples()
    data = write_csv(tmp_path / "houses.csv", X, price)
    code, out, err = run(capsys, "train", REGRESSION, "--data", data, "--target", "price", "--epochs", 40,
                         "--lr", 0.05, "--val-split", 0.25, "--out", tmp_path / "w.npz", "--history", tmp_path / "h.json")
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert sum(line.startswith(f"{REGRESSION.replace(' ; ', ' identity ; ')} epoch ") for line in lines) == 40
    assert "lr 0.05" in lines[0] and "val_loss" in lines[0] and "acc" not in lines[0]
    history = json.loads((tmp_path / "h.json").read_text())
    assert len(history["loss"]) == len(history["val_loss"]) == 40
    assert history["loss"][-1] < history["loss"][0] / 5
    assert history["accuracy"] == [None] * 40 and len(history["grad_norms"][0]) == 2
    module = load_module(REGRESSION)
    params = module.load(tmp_path / "w.npz")
    assert module.evaluate(params, X, price)["loss"] == pytest.approx(
        np.mean((module.predict(params, X)[:, 0] - price) ** 2))


def test_train_on_a_csv_without_header_classifies_and_splits_by_class(tmp_path, capsys):
    X, _, classes = samples(200)
    data = write_csv(tmp_path / "c.csv", X, classes, header=False)
    code, out, _ = run(capsys, "train", CLASSES, "--data", data, "--epochs", 30, "--lr", 0.05, "--val-split", 0.2,
                       "--optimizer", "adam")
    assert code == 0
    summary = out.splitlines()[-1]
    assert "accuracy" in summary and "validation" in summary
    assert float(summary.split("accuracy ")[1].split("%")[0]) > 80
    _, T, _, T_val = split(X, classes, 0.2, classes=True, seed=0)
    for label in range(3):  # stratified: each class held out in proportion, to a sample
        assert abs(np.sum(T_val == label) - 0.2 * np.sum(classes == label)) <= 0.5
    assert len(T) + len(T_val) == 200


def test_train_on_bundled_digits(tmp_path, capsys):
    code, out, _ = run(capsys, "train", ROOT / "generated" / "specs" / "digits.toml", "--data", "digits",
                       "--epochs", 3, "--val-split", 0.2, "--history", tmp_path / "h.json")
    assert code == 0
    history = json.loads((tmp_path / "h.json").read_text())
    assert history["val_accuracy"][-1] > 0.85 and history["accuracy"][-1] > 0.85
    assert history["lr"] == [0.001] * 3 and history["seconds"] == sorted(history["seconds"])


def test_train_on_npz_with_validation_and_predict(tmp_path, capsys):
    X, _, classes = samples(150)
    data = tmp_path / "d.npz"
    np.savez(data, X=X[:100], T=classes[:100], X_val=X[100:], T_val=classes[100:])
    weights = tmp_path / "w.npz"
    code, _, _ = run(capsys, "train", CLASSES, "--data", data, "--epochs", 5, "--out", weights,
                     "--history", tmp_path / "h.json", "-q")
    assert code == 0 and weights.stat().st_size > 0
    assert len(json.loads((tmp_path / "h.json").read_text())["val_loss"]) == 5
    module = load_module(CLASSES)
    expected = module.predict(module.load(weights), X)
    code, out, err = run(capsys, "predict", CLASSES, "--weights", weights, "--data", data)
    assert code == 0 and out.splitlines()[0] == "predicted_class"
    assert [int(v) for v in out.splitlines()[1:]] == expected[:100].tolist()
    assert err.startswith("on the targets of") and "accuracy" in err
    np.save(tmp_path / "X.npy", X)
    code, _, _ = run(capsys, "predict", CLASSES, "--weights", weights, "--data", tmp_path / "X.npy",
                     "-o", tmp_path / "p.csv")
    assert code == 0
    assert (tmp_path / "p.csv").read_text() == "predicted_class\n" + "".join(f"{v}\n" for v in expected)


def test_npy_pair(tmp_path, capsys):
    X, price, _ = samples()
    np.save(tmp_path / "X.npy", X)
    np.save(tmp_path / "T.npy", price)
    code, out, _ = run(capsys, "train", REGRESSION, "--data", tmp_path / "X.npy", "--targets", tmp_path / "T.npy",
                       "--epochs", 2, "--batch-size", "full")
    assert code == 0 and "2 epochs" in out.splitlines()[-1]


def _bad_files(tmp):
    X, price, classes = samples(20)
    good = write_csv(tmp / "good.csv", X, price)
    (tmp / "text.csv").write_text("a,b,c,price\n1,2,3,4\n1,x,3,4\n")
    (tmp / "nan.csv").write_text("a,b,c,price\n1,2,3,4\n1,nan,3,4\n")
    (tmp / "hole.csv").write_text("a,b,c,price\n1,2,3,4\n1,,3,4\n")
    (tmp / "ragged.csv").write_text("a,b,c,price\n1,2,3,4\n1,3,4\n")
    (tmp / "empty.csv").write_text("")
    (tmp / "latin1.csv").write_bytes(b"caf\xe9,b,c,price\n1,2,3,4\n")
    np.savez(tmp / "wide.npz", X=np.hstack([X, X]), T=price)
    np.savez(tmp / "nan.npz", X=np.where(X > 1.5, np.nan, X), T=price)
    np.savez(tmp / "noX.npz", T=price)
    np.savez(tmp / "rows.npz", X=X, T=price[:5])
    np.savez(tmp / "halfval.npz", X=X, T=price, X_val=X)
    np.save(tmp / "X.npy", X)
    np.save(tmp / "objects.npy", np.array([[1, "a", 2]], dtype=object))
    (tmp / "broken.npz").write_bytes(b"PK\x03\x04 not a zip")
    np.savez(tmp / "fraction.npz", X=X, T=classes + 0.5)
    np.savez(tmp / "range.npz", X=X, T=np.full(20, 5))
    np.savez(tmp / "bce.npz", X=X, T=price)
    return {
        "missing": ([REGRESSION, "--data", tmp / "nothere.csv"], "does not exist"),
        "not numeric": ([REGRESSION, "--data", tmp / "text.csv"], "line 3, column 'b' is 'x', not a finite number"),
        "NaN in a CSV": ([REGRESSION, "--data", tmp / "nan.csv"], "is 'nan', not a finite number"),
        "missing value": ([REGRESSION, "--data", tmp / "hole.csv"], "is empty (a missing value)"),
        "ragged": ([REGRESSION, "--data", tmp / "ragged.csv"], "line 3 has 3 fields"),
        "empty": ([REGRESSION, "--data", tmp / "empty.csv"], "is empty"),
        "not UTF-8": ([REGRESSION, "--data", tmp / "latin1.csv"], "is not UTF-8 text"),
        "no such column": ([REGRESSION, "--data", good, "--target", "cost"], "has no column 'cost'"),
        "wrong width": ([REGRESSION, "--data", tmp / "wide.npz"], "X has 6 features per sample, but the network takes 3"),
        "wrong width for the spec": (["5 -> 2 ; mse", "--data", good], "has 4 columns: 2 of targets (c, price) leave 2 features, but the network takes 5 inputs"),
        "NaN in a .npz": ([REGRESSION, "--data", tmp / "nan.npz"], "are not finite"),
        "no X": ([REGRESSION, "--data", tmp / "noX.npz"], "has no array X"),
        "rows differ": ([REGRESSION, "--data", tmp / "rows.npz"], "T has 5 rows but X has 20"),
        "half the validation": ([REGRESSION, "--data", tmp / "halfval.npz"], "only one of X_val and T_val"),
        "objects": ([REGRESSION, "--data", tmp / "objects.npy", "--targets", tmp / "objects.npy"], "save arrays of numbers"),
        "broken archive": ([REGRESSION, "--data", tmp / "broken.npz"], "cannot read"),
        "no targets": ([REGRESSION, "--data", tmp / "X.npy"], "has no targets: give them with --targets T.npy"),
        "unknown type": ([REGRESSION, "--data", tmp / "data.xlsx"], "neither a file of type"),
        "fractional classes": ([CLASSES, "--data", tmp / "fraction.npz"], "must hold class ids 0..2"),
        "class out of range": ([CLASSES, "--data", tmp / "range.npz"], "sample 0 has 5"),
        "bce target outside [0, 1]": (["3 -> 1 sigmoid ; bce", "--data", tmp / "bce.npz"], "must hold 0/1 labels or probabilities"),
        "bad split": ([REGRESSION, "--data", good, "--val-split", "1.5"], "--val-split must be a fraction"),
        "split and validation": ([REGRESSION, "--data", tmp / "halfval.npz", "--val-split", "0.2"], "only one of X_val"),
    }


BAD_CASES = ("missing", "not numeric", "NaN in a CSV", "missing value", "ragged", "empty", "not UTF-8",
             "no such column", "wrong width", "wrong width for the spec", "NaN in a .npz", "no X", "rows differ",
             "half the validation", "objects", "broken archive", "no targets", "unknown type", "fractional classes",
             "class out of range", "bce target outside [0, 1]", "bad split", "split and validation")


@pytest.mark.parametrize("case", BAD_CASES)
def test_bad_data_is_one_line_exit_2_and_nothing_written(tmp_path, capsys, case):
    argv, message = _bad_files(tmp_path)[case]
    before = set(tmp_path.iterdir())
    outputs = ["--out", tmp_path / "w.npz", "--history", tmp_path / "h.json", "--plot", tmp_path / "plots"]
    code, out, err = run(capsys, "train", *argv, "--epochs", 1, *outputs)
    assert code == 2 and out == ""
    assert err.startswith("chainrule: error: ") and err.count("\n") == 1, err
    assert message in err
    assert set(tmp_path.iterdir()) == before


def test_refuses_to_overwrite_files_chainrule_did_not_write(tmp_path, capsys):
    X, price, _ = samples()
    data = write_csv(tmp_path / "d.csv", X, price)
    mine = tmp_path / "notes.json"
    mine.write_text("my notes\n")
    code, _, err = run(capsys, "train", REGRESSION, "--data", data, "--history", mine)
    assert code == 2 and "was not written by chainrule" in err and mine.read_text() == "my notes\n"
    (tmp_path / "plots").mkdir()
    (tmp_path / "plots" / "loss.png").write_bytes(b"my picture")
    code, _, err = run(capsys, "train", REGRESSION, "--data", data, "--plot", tmp_path / "plots")
    assert code == 2 and "for the plots" in err and list((tmp_path / "plots").iterdir()) == [tmp_path / "plots" / "loss.png"]
    code, _, err = run(capsys, "train", REGRESSION, "--data", data, "--out", tmp_path / "no" / "w.npz")
    assert code == 2 and "does not exist; create it first" in err and not (tmp_path / "no").exists()
    code, _, err = run(capsys, "predict", REGRESSION, "--weights", data, "--data", data)
    assert code == 2 and "is not a .npz file" in err
    for path in (tmp_path / "w.npz", tmp_path / "h.json"):  # chainrule's own files are replaced
        for _ in range(2):
            assert run(capsys, "train", REGRESSION, "--data", data, "--epochs", 1, "--out" if path.suffix == ".npz"
                       else "--history", path)[0] == 0


def test_missing_extras_say_how_to_install(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "sklearn", None)
    code, _, err = run(capsys, "train", CLASSES, "--data", "iris")
    assert code == 2 and "pip install chainrule[data]" in err
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    code, _, err = run(capsys, "train", CLASSES, "--data", "iris", "--plot", tmp_path / "p")
    assert code == 2 and "pip install chainrule[plot]" in err and not (tmp_path / "p").exists()


def test_module_flag_takes_only_the_train_arguments(tmp_path, capsys):
    X, price, _ = samples()
    data = write_csv(tmp_path / "d.csv", X, price)
    assert run(capsys, "generate", REGRESSION, "-o", tmp_path / "net.py")[0] == 0
    code, out, _ = run(capsys, "train", "--module", tmp_path / "net.py", "--data", data, "--epochs", 3)
    assert code == 0 and "net: 3 epochs" in out
    code, _, err = run(capsys, "train", "--module", tmp_path / "net.py", "--data", data, "--lr", 0.1)
    assert code == 2 and "--lr changes the generated code" in err
    code, _, err = run(capsys, "train", "--data", data)
    assert code == 2 and "give a SPEC or --module" in err


def test_saved_weights_load_in_a_fresh_python(tmp_path, capsys):
    X, price, _ = samples()
    data = write_csv(tmp_path / "d.csv", X, price)
    assert run(capsys, "generate", REGRESSION, "-o", tmp_path / "net.py")[0] == 0
    assert run(capsys, "train", REGRESSION, "--data", data, "--epochs", 5, "--out", tmp_path / "w.npz", "-q")[0] == 0
    assert run(capsys, "predict", REGRESSION, "--weights", tmp_path / "w.npz", "--data", data, "-o",
               tmp_path / "p.csv")[0] == 0
    script = ("import json, sys, numpy as np; sys.path.insert(0, sys.argv[1]); import net; "
              "p = net.load(sys.argv[2]); X = np.loadtxt(sys.argv[3], delimiter=',', skiprows=1)[:, :3]; "
              "print(json.dumps(net.predict(p, X)[:, 0].tolist()))")
    result = subprocess.run([sys.executable, "-c", script, tmp_path, tmp_path / "w.npz", data],
                            capture_output=True, text=True, check=True, cwd=tmp_path)
    fresh = json.loads(result.stdout)
    printed = [float(v) for v in (tmp_path / "p.csv").read_text().splitlines()[1:]]
    assert fresh == printed and len(fresh) == len(X)


def test_save_and_load_the_optimizer_state():
    module = load_module({"name": "net", "network": {"inputs": 3, "loss": "mse", "layers": [
        {"units": 4, "activation": "relu"}, {"units": 1, "activation": "identity"}]},
        "optimizer": {"type": "adam", "lr": 0.01}})
    X, price, _ = samples(16)
    params = module.init_params(seed=0)
    optimizer = module.make_optimizer(params)
    for _ in range(3):
        optimizer.step(params, module.loss_and_grads(params, X, price)[1])
    buffer = io.BytesIO()
    module.save(params, buffer, optimizer=optimizer)
    buffer.seek(0)
    fresh = module.make_optimizer(module.init_params(seed=1))
    loaded = module.load(buffer, optimizer=fresh)
    assert all(np.array_equal(loaded[k], params[k]) for k in params)
    assert fresh.step_count == 3 and fresh.betas == optimizer.betas
    assert all(np.array_equal(fresh.exp_avg_sq[k], optimizer.exp_avg_sq[k]) for k in params)
    # the two continue identically
    grads = module.loss_and_grads(params, X, price)[1]
    optimizer.step(params, grads)
    fresh.step(loaded, {k: v.copy() for k, v in grads.items()})
    assert all(np.array_equal(loaded[k], params[k]) for k in params)
    buffer.seek(0)
    with pytest.raises(ValueError, match="holds the state of Adam, not of SGD"):
        sgd = load_module("3 -> 4 relu -> 1 ; mse")
        sgd.load(buffer, optimizer=sgd.make_optimizer(sgd.init_params()))


@pytest.mark.parametrize("spec, kind", [(CLASSES, "classes"), ("3 -> 4 tanh dropout=0.2 -> 2 sigmoid ; bce", "binary"),
                                        (REGRESSION, "values")])
def test_callback_per_epoch_with_the_documented_keys_and_stop(spec, kind):
    module = load_module(spec)
    X, price, classes = samples(64)
    T = classes if kind == "classes" else (np.stack([classes > 0, classes > 1], axis=1).astype(float)
                                           if kind == "binary" else price)
    seen = []
    history = module.train(module.init_params(0), X, T, epochs=10, batch_size=16, verbose=False,
                           X_val=X[:16], T_val=T[:16], callback=lambda epoch, logs: seen.append((epoch, logs)) or epoch == 3)
    assert [e for e, _ in seen] == [0, 1, 2, 3] and len(history["loss"]) == 4
    for epoch, logs in seen:
        assert set(logs) == KEYS and logs["loss"] == history["loss"][epoch]
        assert logs["val_loss"] == history["val_loss"][epoch] and logs["lr"] == 0.01
        assert len(logs["grad_norms"]) == 2 and all(g > 0 for g in logs["grad_norms"])
        if kind == "values":
            assert logs["accuracy"] is None and logs["val_accuracy"] is None
        else:
            assert 0 <= logs["accuracy"] <= 1 and 0 <= logs["val_accuracy"] <= 1
    if kind != "binary":  # (with dropout, the first batch's masks are train's own draw)
        # the per-layer norms are those of the epoch's first batch, before its step (unshuffled: samples 0..15)
        first = []
        module.train(module.init_params(0), X, T, epochs=1, batch_size=16, shuffle=False, verbose=False,
                     callback=lambda e, l: first.append(l))
        _, grads = module.loss_and_grads(module.init_params(0), X[:16], T[:16])
        for l in (1, 2):
            assert first[0]["grad_norms"][l - 1] == pytest.approx(
                np.sqrt(np.sum(grads[f"W{l}"] ** 2) + np.sum(grads[f"b{l}"] ** 2)))


def test_predict_and_evaluate_of_the_emitted_module():
    module = load_module(CLASSES)
    X, _, classes = samples(30)
    params = module.init_params(0)
    Y, _ = module.forward(params, X)
    assert module.predict(params, X).tolist() == Y.argmax(axis=1).tolist()
    scores = module.evaluate(params, X, classes)
    assert scores == {"loss": pytest.approx(module.loss(params, X, classes)),
                      "accuracy": pytest.approx(np.mean(Y.argmax(axis=1) == classes))}
    with pytest.raises(ValueError, match="X must have shape"):
        module.predict(params, X[:, :2])


def test_progress_lines_bar_and_quiet(capsys):
    logs = {"loss": 0.5, "val_loss": 0.25, "accuracy": 0.9, "val_accuracy": None, "lr": 0.001, "grad_norms": [1.0]}
    plain = Progress(2, "net", bar=False)
    assert plain(0, logs) is False
    out, err = capsys.readouterr()
    assert out.startswith("net epoch 1/2  loss 0.5  val_loss 0.25  acc 90.0%  lr 0.001  ") and err == ""
    bar = Progress(2, "net", bar=True)
    bar(0, logs)
    bar.close()
    out, err = capsys.readouterr()
    assert out == "" and "1/2" in err and "loss 0.5" in err
    quiet = Progress(2, "net", quiet=True)
    quiet(0, logs)
    assert capsys.readouterr() == ("", "") and quiet.history["loss"] == [0.5]


def test_plots_png_svg_and_one_gradient_line_per_layer(tmp_path, capsys):
    from codegen import plots
    deep = "3 -> 6 sigmoid -> 6 sigmoid -> 6 sigmoid -> 3 softmax ; cross_entropy"
    X, _, classes = samples(90)
    np.savez(tmp_path / "d.npz", X=X, T=classes)
    code, _, _ = run(capsys, "train", deep, "--data", tmp_path / "d.npz", "--epochs", 4, "--val-split", 0.2,
                     "--compare", CLASSES, "--plot", tmp_path / "plots", "--history", tmp_path / "h.json", "-q")
    assert code == 0
    for name in plots.NAMES:
        for suffix in (".png", ".svg"):
            assert (tmp_path / "plots" / f"{name}{suffix}").stat().st_size > 1000
    history = json.loads((tmp_path / "h.json").read_text())
    figures = plots.figures([("deep", history), ("shallow", history["compare"])])
    axes = figures["gradient_norms"].axes[0]
    assert len(axes.get_lines()) == 4 + 2 and axes.get_yscale() == "log"
    assert axes.get_xlabel() == "epoch" and "log scale" in axes.get_ylabel()
    labels = [t.get_text() for t in figures["gradient_norms"].legends[0].get_texts()]
    assert labels == ["layer 1: W1, b1 (input side)", "layer 2: W2, b2", "layer 3: W3, b3", "layer 4: W4, b4 (output)",
                      "deep", "shallow"]
    assert len(figures["loss"].axes[0].get_lines()) == 4  # training and validation of each run
    # rerun into the same folder: chainrule's own plots are replaced
    assert run(capsys, "train", CLASSES, "--data", tmp_path / "d.npz", "--epochs", 1, "--plot", tmp_path / "plots",
               "-q")[0] == 0


def test_module_from_spec_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    module, label = module_from_spec(CLASSES)
    assert label == "3 -> 8 tanh -> 3 softmax ; cross_entropy" and module.TARGET_KIND == "classes"
    assert list(tmp_path.iterdir()) == []
