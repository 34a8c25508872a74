"""Shared helpers for the code-generation tests: load an emitted module, build the same network
in PyTorch, and compare gradients with central differences."""
import types

import numpy as np

from codegen.emit import generate
from derive import derive


def load_module(spec, dtype="float64", name="emitted"):
    """The emitted module of ``spec`` (a spec dict, inline string or path), imported from its text."""
    source = generate(derive(spec), dtype=dtype)
    module = types.ModuleType(name)
    exec(compile(source, f"<{name}>", "exec"), module.__dict__)
    return module


def central_differences(module, params, X, T, eps=1e-6):
    """dL/dparam for every parameter by central differences, in float64."""
    params = {k: np.array(v, dtype=np.float64) for k, v in params.items()}
    grads = {}
    for name, value in params.items():
        numeric = np.zeros_like(value)
        for i in np.ndindex(value.shape):
            saved = value[i]
            value[i] = saved + eps
            up = module.loss(params, X, T)
            value[i] = saved - eps
            down = module.loss(params, X, T)
            value[i] = saved
            numeric[i] = (up - down) / (2 * eps)
        grads[name] = numeric
    return grads


def relative_error(a, b) -> float:
    """|a - b| / (|a| + |b|), the scale floored at 1e-3: central differences of a loss near 1
    carry about 1e-10 of rounding noise, which would swamp a gradient of 1e-5 (hypothesis found
    one), while a wrong gradient of any size still gives an error far above 1e-6."""
    scale = max(np.linalg.norm(a) + np.linalg.norm(b), 1e-3)
    return float(np.linalg.norm(a - b) / scale)


# -- PyTorch ------------------------------------------------------------------------------------

def torch_activation(act):
    """The torch function of an Activation, or None for one this helper does not know."""
    import torch
    import torch.nn.functional as F
    params = dict(act.params)
    table = {
        "identity": lambda z: z,
        "sigmoid": torch.sigmoid,
        "tanh": torch.tanh,
        "relu": torch.relu,
        "leaky_relu": lambda z: F.leaky_relu(z, params.get("slope", 0.01)),
        "elu": lambda z: F.elu(z, params.get("alpha", 1.0)),
        "softplus": F.softplus,
        "gelu": F.gelu,
        "silu": F.silu,
        "softmax": lambda z: torch.softmax(z, dim=1),
        "mish": F.mish,
    }
    return table.get(act.name)


def _fused_loss(network, Z, T):
    import torch.nn.functional as F
    if network.loss.name == "cross_entropy":
        return F.cross_entropy(Z, T)
    if network.loss.name == "bce":
        return F.binary_cross_entropy_with_logits(Z, T)
    return None


def torch_loss_and_grads(network, params, X, T):
    """(loss, grads) of the same network in torch autograd (float64), or None if unsupported."""
    import torch
    acts = [torch_activation(layer.activation) for layer in network.layers]
    if any(a is None for a in acts):
        return None
    weights = {k: torch.tensor(np.asarray(v, dtype=np.float64), requires_grad=True) for k, v in params.items()}
    a = torch.tensor(np.asarray(X, dtype=np.float64))
    L = len(network.layers)
    z = None
    for l, layer in enumerate(network.layers, start=1):
        z = a @ weights[f"W{l}"].T + weights[f"b{l}"]
        if l == L and network.loss.fused_with:
            break
        new = acts[l - 1](z)
        a = new + a if layer.residual else new
    target = torch.tensor(T) if network.loss.name == "cross_entropy" else torch.tensor(np.asarray(T, dtype=np.float64))
    value = _fused_loss(network, z, target) if network.loss.fused_with else _plain_loss(network, a, target)
    if value is None:
        return None
    for l in range(1, L + 1):
        W = weights[f"W{l}"]
        if network.l2:
            value = value + network.l2 / 2 * (W ** 2).sum()
        if network.l1:
            value = value + network.l1 * W.abs().sum()
    value.backward()
    return float(value.detach()), {k: w.grad.numpy() for k, w in weights.items()}


def _plain_loss(network, yhat, T):
    import torch.nn.functional as F
    loss = network.loss
    params = dict(loss.params)
    table = {
        "mse": lambda: F.mse_loss(yhat, T),
        "sse_half": lambda: 0.5 * ((yhat - T) ** 2).sum() / T.shape[0],
        "mae": lambda: F.l1_loss(yhat, T),
        "huber": lambda: F.huber_loss(yhat, T, delta=params.get("delta", 1.0)),
    }
    return table[loss.name]() if loss.name in table else None


_WINDOW_KINDS = ("conv2d", "conv1d", "maxpool2d", "maxpool1d", "avgpool2d", "avgpool1d", "global_avgpool", "flatten")


def _window_module(layer):
    """The torch module of a convolution, pooling or flatten layer (derive.ops.conv, pool), float64."""
    import torch
    nn, w = torch.nn, getattr(layer, "window", None)
    kinds = {
        "conv2d": lambda: nn.Conv2d(w.channels, layer.out_channels, w.kernel, w.stride, w.padding, w.dilation,
                                    bias=layer.bias, dtype=torch.float64),
        "conv1d": lambda: nn.Conv1d(w.channels, layer.out_channels, w.kernel, w.stride, w.padding, w.dilation,
                                    bias=layer.bias, dtype=torch.float64),
        "maxpool2d": lambda: nn.MaxPool2d(w.kernel, w.stride, w.padding),
        "maxpool1d": lambda: nn.MaxPool1d(w.kernel, w.stride, w.padding),
        "avgpool2d": lambda: nn.AvgPool2d(w.kernel, w.stride, w.padding),
        "avgpool1d": lambda: nn.AvgPool1d(w.kernel, w.stride, w.padding),
        "global_avgpool": lambda: nn.Sequential(nn.AdaptiveAvgPool1d(1) if w.dims == 1 else nn.AdaptiveAvgPool2d(1),
                                                nn.Flatten()),
        "flatten": nn.Flatten,
    }
    return kinds[layer.kind]()


def twin(layers, width):
    """The PyTorch twin of spec ``layers`` (from input ``width``): the torch.nn.ModuleList whose module i
    is spec layer i (nn.Linear, nn.LayerNorm, nn.BatchNorm1d, nn.Conv2d, nn.MaxPool2d, ..., a parameterless
    module, nested blocks), float64."""
    import torch
    modules = []
    for layer in layers:
        if layer.kind in _WINDOW_KINDS:
            modules.append(_window_module(layer))
        elif layer.kind == "dense":
            modules.append(torch.nn.Linear(width, layer.units, dtype=torch.float64))
        elif layer.kind == "layernorm":
            modules.append(torch.nn.LayerNorm(width, eps=layer.eps, elementwise_affine=layer.affine, dtype=torch.float64))
        elif layer.kind == "batchnorm":
            modules.append(torch.nn.BatchNorm1d(width, eps=layer.eps, momentum=layer.momentum, affine=layer.affine,
                                                dtype=torch.float64))
        elif layer.kind == "activation":
            modules.append(torch.nn.Identity())  # no parameters; apply() applies the activation
        else:
            modules.append(twin(layer.layers, width))
        width = layer.units
    return torch.nn.ModuleList(modules)


def apply(layers, modules, a):
    """(output, the last dense layer's pre-activation) of the twin on ``a`` (dropout off, as in evaluation)."""
    z = None
    for layer, module in zip(layers, modules):
        if hasattr(layer, "window") and a.ndim == 2:  # flat rows (N, C·H·W) as the images they hold
            a = a.reshape((len(a),) + layer.window.shape)
        if layer.kind in ("conv1d", "conv2d"):
            z = module(a)
            a = torch_activation(layer.activation)(z)
        elif layer.kind in _WINDOW_KINDS:
            a = module(a)
        elif layer.kind == "dense":
            z = module(a)
            out = torch_activation(layer.activation)(z)
            a = out + a if layer.residual else out
        elif layer.kind in ("layernorm", "batchnorm"):
            a = module(a)
        elif layer.kind == "activation":
            a = torch_activation(layer.activation)(a)
        else:
            a = apply(layer.layers, module, a)[0] + a
    return a, z


def torch_loss(network, modules, X, T):
    """The spec's loss (with its penalties on the nn.Linear weights) of the twin ``modules`` on X, T."""
    import torch
    yhat, z = apply(network.layers, modules, torch.from_numpy(X))
    target = torch.from_numpy(T)
    value = _fused_loss(network, z, target) if network.loss.fused_with else _plain_loss(network, yhat, target)
    for name, p in modules.named_parameters():
        penalized = (torch.nn.Linear, torch.nn.Conv1d, torch.nn.Conv2d)
        if isinstance(dict(modules.named_modules())[name.rsplit(".", 1)[0]], penalized) and name.endswith("weight"):
            value = value + network.l2 / 2 * (p ** 2).sum() + network.l1 * p.abs().sum()
    return value


def random_params(module, seed=0):
    """init_params moved by N(0, 0.3²) noise, so that no parameter sits at a value that hides a wrong gradient."""
    rng = np.random.default_rng(seed)
    return {k: v + 0.3 * rng.normal(size=v.shape) for k, v in module.init_params(seed=seed).items()}


def assert_equals_torch(module, params, X, T, modules, torch_loss_of, tolerance=1e-10):
    """The module's loss and every gradient at ``params`` equal PyTorch's: ``modules`` (whose state-dict keys are
    the module's, in its order) load ``params`` and ``torch_loss_of(modules)`` is torch's loss."""
    import torch
    state = module.to_torch_state_dict(params)
    assert list(state) == list(modules.state_dict())
    modules.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()})
    value = torch_loss_of(modules)
    value.backward()
    torch_grads = module.from_torch_state_dict({k: p.grad for k, p in modules.named_parameters()})
    loss, grads = module.loss_and_grads(params, X, T)
    assert abs(loss - value.item()) < tolerance
    assert grads.keys() == torch_grads.keys() == params.keys()
    for key in grads:
        assert np.abs(grads[key] - torch_grads[key]).max() < tolerance, key


def sequence_twin(net):
    """torch.nn.ModuleList, float64: module i is spec layer i of an embedding/recurrent/dense network (a dense
    layer's activation is left to the forward pass)."""
    import torch
    modules, shape = [], net.input_shape
    for layer in net.layers:
        width = shape[-1][1]
        if layer.kind == "embedding":
            modules.append(torch.nn.Embedding(layer.vocab, layer.embedding_dim, dtype=torch.float64))
        elif layer.kind in ("rnn", "lstm", "gru"):
            cls = {"rnn": torch.nn.RNN, "lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[layer.kind]
            extra = {"nonlinearity": layer.nonlinearity} if layer.kind == "rnn" else {}
            modules.append(cls(width, layer.hidden_size, batch_first=True, dtype=torch.float64, **extra))
        else:
            modules.append(torch.nn.Linear(width, layer.units, dtype=torch.float64))
        shape = layer.shape
    return torch.nn.ModuleList(modules)
