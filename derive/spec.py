"""Network specs: a TOML file, an inline string such as ``"2 -> 2 relu -> 1 ; mse"``, or a dict.

All three become the same validated :class:`Network`; every mistake is a one-line
:class:`ChainruleError` that names the problem and the fix.
"""
import re
from dataclasses import dataclass, field
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

from . import limits
from .errors import ChainruleError, did_you_mean, shown
from .limits import read_text
from .ops import MAX_PARAM
from .optim import validate as validate_training_tables
from .ops.activations import Activation, make_activation
from .ops.losses import Loss, make_loss

TOP_KEYS = ("name", "description", "network", "optimizer", "schedule", "training")
NETWORK_KEYS = ("inputs", "layers", "loss", "l1", "l2")
LAYER_KEYS = ("units", "activation", "residual", "dropout")


@dataclass(frozen=True)
class Layer:
    """A dense layer ``z = W a + b``, ``a' = f(z)`` (times a dropout mask, plus ``a`` when ``residual``)."""
    units: int
    activation: Activation
    residual: bool = False
    dropout: float = 0.0


@dataclass(frozen=True)
class Network:
    """A validated network: layer widths, activations, the loss and weight penalties."""
    name: str
    inputs: int
    layers: tuple
    loss: Loss
    l1: float = 0.0
    l2: float = 0.0
    description: str = ""
    source: str = ""
    tables: dict = field(default_factory=dict, compare=False)

    @property
    def widths(self) -> list:
        """[inputs, units of layer 1, ..., outputs]."""
        return [self.inputs] + [layer.units for layer in self.layers]

    @property
    def outputs(self) -> int:
        return self.layers[-1].units

    @property
    def param_names(self) -> list:
        return [f"{p}{l}" for l in range(1, len(self.layers) + 1) for p in ("W", "b")]


def _check_keys(table: dict, allowed, where: str):
    for key in table:
        if key not in allowed:
            raise ChainruleError(f"{where}: unknown key {shown(key)}{did_you_mean(key, allowed)}; "
                                 f"allowed keys: {', '.join(allowed)}")


def _positive_int(value, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ChainruleError(f"{what} must be a positive whole number, not {shown(value)}")
    return value


def _at_most(value: int, limit: int, message: str):
    """The size limits (derive.limits), checked before any work that grows with the size."""
    if value > limit:
        raise ChainruleError(message.format(value, limit) + "; make the network smaller")


def _penalty(value, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= MAX_PARAM:
        raise ChainruleError(f"{what} must be a number in [0, {MAX_PARAM}], not {shown(value)}")
    return float(value)


def _entry(value, where: str):
    """An activation or loss entry checked for shape before the catalogue looks it up."""
    if value is None or isinstance(value, str):
        return value
    if not isinstance(value, dict):
        raise ChainruleError(f"{where} must be a name or a table, not {shown(value)}")
    for key in ("type", "formula", "name"):
        if key in value and not isinstance(value[key], str):
            raise ChainruleError(f"{where} {key} must be a string, not {shown(value[key])}")
    return value


def from_dict(spec: dict, source: str = "") -> Network:
    """Validate a spec table (the parsed TOML) into a Network."""
    if not isinstance(spec, dict):
        raise ChainruleError("a spec must be a table with a [network] section")
    _check_keys(spec, TOP_KEYS, "spec")
    if "network" not in spec:
        raise ChainruleError("the spec has no [network] table; add one with inputs, layers and loss")
    net = spec["network"]
    if not isinstance(net, dict):
        raise ChainruleError("[network] must be a table with inputs, layers and loss")
    _check_keys(net, NETWORK_KEYS, "[network]")
    inputs = _positive_int(net.get("inputs"), "[network] inputs")
    raw_layers = net.get("layers")
    if not isinstance(raw_layers, list) or not raw_layers:
        raise ChainruleError("[network] layers must be a non-empty list like [{ units = 2, activation = \"relu\" }]")
    _at_most(len(raw_layers), limits.LAYERS, "[network] has {} layers; the limit is {} (LAYERS)")
    _at_most(inputs, limits.INPUTS, "[network] inputs is {}; the limit is {} (INPUTS)")
    layers, width = [], inputs
    for i, raw in enumerate(raw_layers, start=1):
        where = f"layer {i}"
        if isinstance(raw, int) and not isinstance(raw, bool):
            raw = {"units": raw}
        if not isinstance(raw, dict):
            raise ChainruleError(f"{where} must be a table like {{ units = 2, activation = \"relu\" }}")
        _check_keys(raw, LAYER_KEYS, where)
        units = _positive_int(raw.get("units"), f"{where} units")
        act = make_activation(_entry(raw.get("activation"), f"{where}: activation"), where)
        residual = raw.get("residual", False)
        if not isinstance(residual, bool):
            raise ChainruleError(f"{where} residual must be true or false, not {shown(residual)}")
        if residual and units != width:
            raise ChainruleError(f"{where} is residual but maps {width} to {units} units; "
                                 f"a residual layer needs units = {width}")
        if not act.elementwise and i != len(raw_layers):
            raise ChainruleError(f"{where}: {act.name} is only supported on the output layer")
        dropout = raw.get("dropout", 0.0)
        if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0 <= dropout < 1:
            raise ChainruleError(f"{where} dropout must be a probability in [0, 1), not {shown(dropout)}")
        if dropout and i == len(raw_layers):
            raise ChainruleError(f"{where} is the output layer and cannot have dropout; put it on a hidden layer")
        layers.append(Layer(units, act, residual, float(dropout)))
        width = units
    _at_most(max(layer.units for layer in layers), limits.UNITS, "a layer has {} units; the limit is {} (UNITS)")
    _at_most(sum((a + 1) * b for a, b in zip([inputs] + [l.units for l in layers], [l.units for l in layers])),
             limits.PARAMETERS, "the network has {} weights and biases; the limit is {} (PARAMETERS)")
    loss = make_loss(_entry(net.get("loss"), "loss"))
    output = layers[-1].activation
    if loss.fused_with and output.name != loss.fused_with:
        raise ChainruleError(f"loss {loss.name} needs a {loss.fused_with} output layer, not {output.name}; "
                             f"set the last layer's activation = \"{loss.fused_with}\"")
    if loss.fused_with and layers[-1].residual:
        raise ChainruleError(f"the last layer feeds the fused {output.name} + {loss.name} loss and cannot be residual; "
                             f"remove residual = true from it")
    if not output.elementwise and layers[-1].residual:
        raise ChainruleError(f"the {output.name} output layer cannot be residual (its output must be the "
                             f"probabilities); remove residual = true from it")
    if output.name == "softmax" and layers[-1].units < 2:
        raise ChainruleError("a softmax output needs at least 2 units (use sigmoid and bce for one)")
    name = spec.get("name", "network")
    if not (isinstance(name, str) and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name)):
        raise ChainruleError(f"name {shown(name)} must be an identifier like 'simple_nn'")
    description = spec.get("description", "")
    if not isinstance(description, str):
        raise ChainruleError(f"description must be a string, not {shown(description)}")
    tables = {k: spec[k] for k in ("optimizer", "schedule", "training") if k in spec}
    for key, table in tables.items():
        if not isinstance(table, dict):
            raise ChainruleError(f"[{key}] must be a table")
    validate_training_tables(tables)
    return Network(name, inputs, tuple(layers), loss, _penalty(net.get("l1", 0), "[network] l1"),
                   _penalty(net.get("l2", 0), "[network] l2"), description, source, tables)


def load(path) -> Network:
    """Read and validate a TOML spec file."""
    path = Path(path)
    text = read_text(path, "spec file", "; give a .toml file or an inline spec like \"2 -> 2 relu -> 1 ; mse\"")
    try:
        table = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ChainruleError(f"{path} is not valid TOML: {err}") from None
    except RecursionError:
        raise ChainruleError(f"{path} nests arrays or tables too deeply to read; a spec needs a few levels") from None
    except ValueError as err:  # an integer of more than 4300 digits
        raise ChainruleError(f"{path} has a value TOML cannot read: {err}") from None
    table.setdefault("name", re.sub(r"\W", "_", path.stem) or "network")
    return from_dict(table, source=path.as_posix())


_INLINE_LAYER = re.compile(r"^(?P<units>\S+)(?:\s+(?P<act>(?!residual\b|dropout=)[A-Za-z_]\w*(?:\(.*\))?|\[.*\]))?"
                           r"(?P<res>\s+residual)?(?:\s+dropout=(?P<drop>\S+))?$")
_CALL = re.compile(r"^(?P<name>[A-Za-z_]\w*)(?:\((?P<args>.*)\))?$")


def parse_inline(text: str) -> Network:
    """Parse ``"2 -> 2 relu -> 2 tanh residual -> 1 ; huber(delta=0.5) ; l2=0.01"``.

    A layer is ``UNITS [ACTIVATION] [residual] [dropout=P]``; an activation is a name, ``name(k=v)``, or a
    formula in ``z`` in brackets, ``[z*tanh(log(1+exp(z)))]``. After the first ``;`` comes the
    loss (a name, ``name(k=v)`` or ``[formula in yhat, y]``), then optional ``l1=...``, ``l2=...``.
    """
    usage = "write it like \"2 -> 2 relu -> 1 ; mse\""
    parts = [p.strip() for p in text.split(";")]
    if len(parts) < 2 or not parts[1]:
        raise ChainruleError(f"inline spec '{text}' has no loss after ';'; {usage}")
    chain = [p.strip() for p in parts[0].split("->")]
    if len(chain) < 2:
        raise ChainruleError(f"inline spec '{text}' has no layers; {usage}")
    inputs = _inline_int(chain[0], "inputs", usage)
    layers = []
    for i, token in enumerate(chain[1:], start=1):
        match = _INLINE_LAYER.match(token)
        if not match:
            raise ChainruleError(f"inline layer {i} '{token}' is not 'UNITS [activation] [residual]'; {usage}")
        layer = {"units": _inline_int(match["units"], f"layer {i} units", usage)}
        if match["act"]:
            layer["activation"] = _inline_entry(match["act"], f"layer {i}")
        if match["res"]:
            layer["residual"] = True
        if match["drop"]:
            layer["dropout"] = _inline_number(match["drop"], f"layer {i} dropout")
        layers.append(layer)
    network = {"inputs": inputs, "layers": layers, "loss": _inline_entry(parts[1], "loss")}
    for extra in parts[2:]:
        key, _, value = extra.partition("=")
        if key.strip() not in ("l1", "l2") or not value:
            raise ChainruleError(f"inline option '{extra}' is not l1=NUMBER or l2=NUMBER")
        network[key.strip()] = _inline_number(value, key.strip())
    return from_dict({"name": "network", "network": network}, source=text)


def _inline_int(token: str, what: str, usage: str) -> int:
    if not re.fullmatch(r"[+-]?\d+", token):
        raise ChainruleError(f"{what} '{token}' is not a whole number; {usage}")
    return int(token)


def _inline_number(token: str, what: str) -> float:
    try:
        return float(token)
    except ValueError:
        raise ChainruleError(f"{what} value '{token.strip()}' is not a number") from None


def _inline_entry(token: str, where: str):
    token = token.strip()
    if token.startswith("[") and token.endswith("]"):
        return {"formula": token[1:-1]}
    match = _CALL.match(token)
    if not match:
        raise ChainruleError(f"{where} '{token}' is not NAME, NAME(key=value) or [formula]")
    entry = {"type": match["name"]}
    for arg in filter(None, (a.strip() for a in (match["args"] or "").split(","))):
        key, eq, value = arg.partition("=")
        if not eq:
            raise ChainruleError(f"{where} argument '{arg}' is not key=value")
        entry[key.strip()] = _inline_number(value, f"{where} {key.strip()}")
    return entry


def build(spec) -> Network:
    """A Network from a Network, a dict, a path to a TOML file, or an inline string."""
    if isinstance(spec, Network):
        return spec
    if isinstance(spec, dict):
        return from_dict(spec)
    text = str(spec)
    if "->" in text:
        return parse_inline(text)
    return load(text)
