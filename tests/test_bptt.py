"""Truncated BPTT ([training] bptt = k): the emitted train cuts each batch's sequences into chunks of k steps,
carries the recurrent state into the next chunk without its gradient and steps the optimizer after each chunk,
exactly as the usual PyTorch loop with h.detach() does: in float64 the chunks' losses, their gradients and
the parameters after several chunks equal that loop's to 1e-10, for an LSTM on token ids and a GRU on
feature vectors, with gradient clipping that bites; bad bptt settings are one-line spec errors."""
import numpy as np
import pytest
import torch

from derive import derive
from derive.errors import ChainruleError
from gradcheck import load_module

F = torch.nn.functional
LENGTH, CLASSES, N = 7, 5, 4


def spec_of(cell, bptt, tokens, optimizer=None):
    inputs = {"length": LENGTH, "vocab": 6} if tokens else {"length": LENGTH, "features": 3}
    layers = ([{"type": "embedding", "embedding_dim": 3}] if tokens else []) + [
        {"type": cell, "hidden_size": 4}, {"units": CLASSES, "activation": "softmax"}]
    training = {"clip_norm": 0.05} if bptt is None else {"bptt": bptt, "clip_norm": 0.05}
    return {"name": "seq", "network": {"inputs": inputs, "layers": layers, "loss": "cross_entropy"},
            "optimizer": optimizer or {"type": "sgd", "lr": 0.5, "momentum": 0.9}, "training": training}


def twin(cell, tokens):
    modules = ([torch.nn.Embedding(6, 3, dtype=torch.float64)] if tokens else []) + [
        {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[cell](3, 4, batch_first=True, dtype=torch.float64),
        torch.nn.Linear(4, CLASSES, dtype=torch.float64)]
    return torch.nn.ModuleList(modules)


def data(tokens, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.integers(0, 6, size=(N, LENGTH)) if tokens else rng.normal(size=(N, LENGTH, 3))
    return X, rng.integers(0, CLASSES, size=(N, LENGTH))


def chunk_loss(modules, x, t, state):
    """PyTorch's loss of one chunk from state; (loss, the chunk's final state detached)."""
    *embed, cell, dense = modules
    a = embed[0](x) if embed else x
    out, state = cell(a, state)
    loss = F.cross_entropy(dense(out).reshape(-1, CLASSES), t.reshape(-1))
    detached = tuple(s.detach() for s in state) if isinstance(state, tuple) else state.detach()
    return loss, detached


def torch_loop(modules, X, T, k, epochs):
    """The usual truncated-BPTT loop, one batch of all N sequences in order: per epoch, the chunks' losses."""
    optimizer = torch.optim.SGD(modules.parameters(), lr=0.5, momentum=0.9)
    x, t = torch.from_numpy(X), torch.from_numpy(T)
    history = []
    for _ in range(epochs):
        state, losses = None, []
        for first in range(0, LENGTH, k):
            loss, state = chunk_loss(modules, x[:, first:first + k], t[:, first:first + k], state)
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(modules.parameters(), 0.05)
            optimizer.step()
            losses.append(loss.item())
        history.append(losses)
    return history


def loaded(module, modules, params):
    state = module.to_torch_state_dict(params)
    assert state.keys() == modules.state_dict().keys()
    modules.load_state_dict({key: torch.from_numpy(value) for key, value in state.items()})


CASES = [("lstm", True), ("gru", False)]


@pytest.mark.parametrize("cell, tokens", CASES, ids=["lstm-tokens", "gru-features"])
def test_each_chunk_starts_from_the_last_ones_state_and_gets_its_own_loss_and_gradients(cell, tokens):
    """No update between the chunks here: each chunk's loss (the mean over its N·k steps) and gradients,
    from the state the chunk before left, against PyTorch's; the last chunk is shorter (7 = 3 + 3 + 1)."""
    module = load_module(spec_of(cell, 3, tokens))
    params = module.init_params(seed=1)
    modules = twin(cell, tokens)
    loaded(module, modules, params)
    X, T = data(tokens)
    _, X_ready, Y_ready = module._checked(params, X, T)
    state, torch_state = {}, None
    for first in range(0, LENGTH, 3):
        loss, grads = module._chunk(params, X_ready, Y_ready, first, min(first + 3, LENGTH), None, state)
        modules.zero_grad()
        value, torch_state = chunk_loss(modules, torch.from_numpy(X[:, first:first + 3]),
                                        torch.from_numpy(T[:, first:first + 3]), torch_state)
        value.backward()
        expected = module.from_torch_state_dict({key: p.grad for key, p in modules.named_parameters()})
        assert abs(loss - value.item()) < 1e-10
        for key in grads:
            assert np.abs(grads[key] - expected[key]).max() < 1e-10, (first, key)
        carried = state[next(iter(state))]
        assert len(carried) == (2 if cell == "lstm" else 1)
        assert np.abs(carried[0] - (torch_state[0] if cell == "lstm" else torch_state)[0].numpy()).max() < 1e-12


@pytest.mark.parametrize("cell, tokens", CASES, ids=["lstm-tokens", "gru-features"])
def test_train_steps_per_chunk_as_the_pytorch_loop_with_detach(cell, tokens):
    """Three epochs of one batch, three chunks each (nine clipped SGD-momentum steps): every epoch's loss,
    the mean of its chunks', and the parameters after each epoch equal the PyTorch loop's."""
    module = load_module(spec_of(cell, 3, tokens))
    params = module.init_params(seed=2)
    modules = twin(cell, tokens)
    loaded(module, modules, params)
    X, T = data(tokens, seed=3)
    norms = []
    history = module.train(params, X, T, epochs=3, batch_size=N, shuffle=False, verbose=False,
                           callback=lambda epoch, logs: norms.append(np.linalg.norm(logs["grad_norms"])))
    expected = torch_loop(modules, X, T, 3, 3)
    assert min(norms) > 0.05 * 2  # the clipping bites: the first chunk's gradient is longer than clip_norm
    assert np.abs(np.array(history["loss"]) - np.mean(expected, axis=1)).max() < 1e-10
    trained = module.from_torch_state_dict({key: p.detach() for key, p in modules.named_parameters()})
    for key in params:
        assert np.abs(params[key] - trained[key]).max() < 1e-10, key


def test_one_chunk_of_the_whole_length_is_ordinary_training():
    with_bptt, without = load_module(spec_of("lstm", LENGTH, True)), load_module(spec_of("lstm", None, True))
    params = with_bptt.init_params(seed=0)
    copy = {key: value.copy() for key, value in params.items()}
    X, T = data(True)
    a = with_bptt.train(params, X, T, epochs=2, batch_size=2, verbose=False)
    b = without.train(copy, X, T, epochs=2, batch_size=2, verbose=False)
    assert np.allclose(a["loss"], b["loss"], rtol=0, atol=1e-12)
    assert all(np.abs(params[key] - copy[key]).max() < 1e-12 for key in params)


@pytest.mark.parametrize("change, message", [
    ({"training": {"bptt": 0}}, "bptt must be a whole number >= 1"),
    ({"training": {"bptt": 8}}, "bptt = 8 is longer than the sequences (7 steps); use at most 7"),
    ({"training": {"bptt": True}}, "bptt must be a whole number"),
    ({"last": False}, "bptt needs a loss at every step"),
])
def test_bad_bptt_settings_are_one_line_spec_errors(change, message):
    spec = spec_of("lstm", 3, True)
    spec.update({k: v for k, v in change.items() if k == "training"})
    if change.get("last") is False:
        spec["network"]["layers"][1]["return_sequences"] = False
    with pytest.raises(ChainruleError) as err:
        derive(spec)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_bptt_needs_a_recurrent_layer():
    with pytest.raises(ChainruleError, match=r"bptt \(truncated backpropagation through time\) needs a recurrent"):
        derive({"network": {"inputs": 3, "layers": [{"units": 2}], "loss": "mse"}, "training": {"bptt": 2}})


def test_the_notes_say_each_chunk_starts_from_the_carried_state():
    """The steps are printed from h_0 = 0; under bptt the Training section says a chunk's h_0 is the state
    carried from the chunk before, a constant, so the same steps hold with T = k."""
    text = " ".join(derive(spec_of("lstm", 4, tokens=True)).text().split())  # the lines unwrapped
    assert "bptt = 4" in text and "chunks of 4 steps" in text and "T = 4" in text
    assert "no gradient flows back into it" in text
    assert "chunks of" not in derive(spec_of("lstm", None, tokens=True)).text()
