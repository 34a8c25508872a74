"""Optimizers and learning-rate schedules, one definition each, as torch.optim has them.

Each entry holds PyTorch's hyperparameter names and defaults, the state it keeps per
parameter, its update rule as LaTeX (for the lecture notes) and the name of the Jinja macro in
``codegen/templates/optim.py.jinja`` that writes it as NumPy. ``examples`` are the settings
the tests run against torch; between them they turn every option on. ``state`` uses torch's
names; the emitted class keeps the ones its options use (``step`` as ``step_count``).

Add an optimizer or a schedule by adding one entry to ``OPTIMIZERS`` or ``SCHEDULES`` (and its
macro); ``validate`` and the tests pick it up. Value rules live in ``RULES``, keyed by
hyperparameter name, so a name means the same thing everywhere.

``validate(tables)`` turns the raw ``[optimizer]``, ``[schedule]`` and ``[training]`` tables
into settings with every default filled in::

    {"optimizer": {"type": "adam", "lr": 0.001, "betas": (0.9, 0.999), ...},
     "schedule": None or {"type": "step", "step_size": 10, "gamma": 0.1, "warmup_epochs": 0},
     "training": {"epochs": 20, "batch_size": 32, "clip_norm": None, "clip_value": None,
                  "patience": None, "seed": 0, "init": None}}

``[training] init`` names a weight initialization of ``INITS`` (None: the default for each layer's
activation); ``init_scheme(activation, init)`` resolves it to a scheme and a gain per layer.

Schedules are stepped once per epoch. ``cyclic`` is CyclicLR with ``cycle_momentum=False``:
the emitted optimizers keep their momentum/betas fixed (torch's default True would also cycle
them).

Warm-up: ``warmup_epochs = k`` on any schedule trains epoch ``e < k`` at ``r0 * (e + 1) / (k + 1)``,
where ``r0`` is the schedule's own epoch-0 rate (the optimizer's ``lr``; ``base_lr`` for cyclic),
and then runs the schedule from its epoch 0, so the rate climbs in k + 1 equal steps to r0.
That is torch's ``SequentialLR([LinearLR(start_factor=1 / (k + 1), total_iters=k), schedule],
milestones=[k])`` with the schedule constructed first.
"""
import math
from dataclasses import dataclass
from typing import Callable

from .errors import ChainruleError, shown, unknown

REQUIRED = None  # a default of None in a schedule marks a key the spec must give


@dataclass(frozen=True)
class OptimizerKind:
    """A catalogue entry for one torch.optim optimizer. ``rules(settings)`` are its update rules as
    LaTeX, only those the settings use (no momentum line at momentum 0); ``symbols`` ties each
    hyperparameter to the symbol the rules write it as."""
    name: str
    torch_name: str
    defaults: dict
    state: tuple
    rules: Callable
    symbols: dict
    macro: str
    examples: tuple


@dataclass(frozen=True)
class ScheduleKind:
    """A catalogue entry for one torch.optim.lr_scheduler schedule, stepped once per epoch."""
    name: str
    torch_name: str
    defaults: dict
    equations: tuple
    symbols: dict
    macro: str
    examples: tuple
    optional: tuple = ()  # keys whose default None means "not given" rather than "required"


BETAS = (0.9, 0.999)
#: The parameter's gradient at step t, plus the coupled weight decay where it is on.
GRADIENT = r"g_t = \nabla_\theta L(\theta_{t-1})"


def _gradient(s) -> str:
    return GRADIENT + (r" + \lambda \theta_{t-1}" if s["weight_decay"] else "")


def _sgd(s):
    if not s["momentum"]:
        return _gradient(s), r"\theta_t = \theta_{t-1} - \eta g_t"
    damped = r"(1 - \tau) g_t" if s["dampening"] else "g_t"
    step = r"(g_t + \mu B_t)" if s["nesterov"] else "B_t"
    return (_gradient(s), rf"B_1 = g_1, \quad B_t = \mu B_{{t-1}} + {damped}",
            rf"\theta_t = \theta_{{t-1}} - \eta {step}")


def _adagrad(s):
    rate = r"\tilde\eta_t" if s["lr_decay"] else r"\eta"
    return ((r"\tilde\eta_t = \eta / (1 + (t - 1) \kappa)",) if s["lr_decay"] else ()) + (
        _gradient(s), r"s_0 = s_{\text{init}}, \quad s_t = s_{t-1} + g_t^2",
        rf"\theta_t = \theta_{{t-1}} - {rate} \, g_t / (\sqrt{{s_t}} + \epsilon)")


def _rmsprop(s):
    rules = [_gradient(s), r"v_0 = 0, \quad v_t = \alpha v_{t-1} + (1 - \alpha) g_t^2"]
    v = "v_t"
    if s["centered"]:
        rules.append(r"\bar g_0 = 0, \quad \bar g_t = \alpha \bar g_{t-1} + (1 - \alpha) g_t, \quad "
                     r"\tilde v_t = v_t - \bar g_t^2")
        v = r"\tilde v_t"
    if s["momentum"]:
        rules += [rf"B_0 = 0, \quad B_t = \mu B_{{t-1}} + g_t / (\sqrt{{{v}}} + \epsilon)",
                  r"\theta_t = \theta_{t-1} - \eta B_t"]
    else:
        rules.append(rf"\theta_t = \theta_{{t-1}} - \eta g_t / (\sqrt{{{v}}} + \epsilon)")
    return tuple(rules)


def _adam_moments(s):
    """Adam's and AdamW's moments and step (they differ only in how the weight decay enters)."""
    v = (r"v^{\max}_0 = 0, \quad v^{\max}_t = \max(v^{\max}_{t-1}, v_t), \quad \hat v_t = v^{\max}_t / (1 - \beta_2^t)"
         if s["amsgrad"] else r"\hat v_t = v_t / (1 - \beta_2^t)")
    return (r"m_0 = v_0 = 0",
            r"m_t = \beta_1 m_{t-1} + (1 - \beta_1) g_t",
            r"v_t = \beta_2 v_{t-1} + (1 - \beta_2) g_t^2",
            r"\hat m_t = m_t / (1 - \beta_1^t)",
            v,
            r"\theta_t = \theta_{t-1} - \eta \hat m_t / (\sqrt{\hat v_t} + \epsilon)")


def _adamw(s):
    decay = (r"\theta_{t-1} \leftarrow \theta_{t-1} (1 - \eta \lambda)",) if s["weight_decay"] else ()
    return decay + (GRADIENT,) + _adam_moments(s)


def _adadelta(s):
    return (_gradient(s), r"v_0 = u_0 = 0",
            r"v_t = \rho v_{t-1} + (1 - \rho) g_t^2",
            r"d_t = \sqrt{u_{t-1} + \epsilon} \, g_t / \sqrt{v_t + \epsilon}",
            r"u_t = \rho u_{t-1} + (1 - \rho) d_t^2",
            r"\theta_t = \theta_{t-1} - \eta d_t")


def _adamax(s):
    return (_gradient(s), r"m_0 = u_0 = 0",
            r"m_t = \beta_1 m_{t-1} + (1 - \beta_1) g_t",
            r"u_t = \max(\beta_2 u_{t-1}, |g_t| + \epsilon)",
            r"\theta_t = \theta_{t-1} - \frac{\eta}{1 - \beta_1^t} \, m_t / u_t")


def _nadam(s):
    return (_gradient(s), r"m_0 = v_0 = 0",
            r"\mu_t = \beta_1 (1 - \tfrac12 \, 0.96^{t \psi})",
            r"m_t = \beta_1 m_{t-1} + (1 - \beta_1) g_t",
            r"v_t = \beta_2 v_{t-1} + (1 - \beta_2) g_t^2, \quad \hat v_t = v_t / (1 - \beta_2^t)",
            r"\theta_t = \theta_{t-1} - \eta \left(\frac{\mu_{t+1} m_t}{1 - \prod_{i=1}^{t+1} \mu_i} + "
            r"\frac{(1 - \mu_t) g_t}{1 - \prod_{i=1}^{t} \mu_i}\right) / (\sqrt{\hat v_t} + \epsilon)")


LR, DECAY, EPS, BETA = {"lr": r"\eta"}, {"weight_decay": r"\lambda"}, {"eps": r"\epsilon"}, \
    {"betas": r"(\beta_1, \beta_2)"}

OPTIMIZERS: dict[str, OptimizerKind] = {kind.name: kind for kind in (
    OptimizerKind(
        "sgd", "SGD",
        dict(lr=1e-3, momentum=0.0, dampening=0.0, nesterov=False, weight_decay=0.0),
        state=("momentum_buffer",), rules=_sgd,
        symbols={**LR, "momentum": r"\mu", "dampening": r"\tau", **DECAY},
        macro="sgd",
        examples=({}, dict(momentum=0.9), dict(momentum=0.9, dampening=0.5),
                  dict(momentum=0.9, nesterov=True), dict(weight_decay=0.1, momentum=0.5, lr=0.05)),
    ),
    OptimizerKind(
        "adagrad", "Adagrad",
        dict(lr=0.01, lr_decay=0.0, weight_decay=0.0, initial_accumulator_value=0.0, eps=1e-10),
        state=("step", "sum"), rules=_adagrad,
        symbols={**LR, "lr_decay": r"\kappa", **DECAY, "initial_accumulator_value": r"s_{\text{init}}", **EPS},
        macro="adagrad",
        examples=({}, dict(lr_decay=0.05), dict(weight_decay=0.1), dict(initial_accumulator_value=0.5),
                  dict(eps=1e-3, lr=0.1)),
    ),
    OptimizerKind(
        "rmsprop", "RMSprop",
        dict(lr=0.01, alpha=0.99, eps=1e-8, weight_decay=0.0, momentum=0.0, centered=False),
        state=("step", "square_avg", "grad_avg", "momentum_buffer"), rules=_rmsprop,
        symbols={**LR, "alpha": r"\alpha", **EPS, **DECAY, "momentum": r"\mu"},
        macro="rmsprop",
        examples=({}, dict(momentum=0.9), dict(centered=True), dict(centered=True, momentum=0.5),
                  dict(weight_decay=0.1, alpha=0.9, eps=1e-3, lr=0.001)),
    ),
    OptimizerKind(
        "adam", "Adam",
        dict(lr=1e-3, betas=BETAS, eps=1e-8, weight_decay=0.0, amsgrad=False),
        state=("step", "exp_avg", "exp_avg_sq", "max_exp_avg_sq"),
        rules=lambda s: (_gradient(s),) + _adam_moments(s),
        symbols={**LR, **BETA, **EPS, **DECAY},
        macro="adam",
        examples=({}, dict(amsgrad=True), dict(weight_decay=0.1), dict(betas=(0.5, 0.9), eps=1e-3, lr=0.01)),
    ),
    OptimizerKind(
        "adamw", "AdamW",
        dict(lr=1e-3, betas=BETAS, eps=1e-8, weight_decay=1e-2, amsgrad=False),
        state=("step", "exp_avg", "exp_avg_sq", "max_exp_avg_sq"), rules=_adamw,
        symbols={**LR, **BETA, **EPS, **DECAY},
        macro="adam",
        examples=({}, dict(amsgrad=True), dict(weight_decay=0.0),
                  dict(weight_decay=0.3, lr=0.01, betas=(0.5, 0.9), eps=1e-3)),
    ),
    OptimizerKind(
        "adadelta", "Adadelta",
        dict(lr=1.0, rho=0.9, eps=1e-6, weight_decay=0.0),
        state=("step", "square_avg", "acc_delta"), rules=_adadelta,
        symbols={**LR, "rho": r"\rho", **EPS, **DECAY},
        macro="adadelta",
        examples=({}, dict(weight_decay=0.1), dict(rho=0.5, eps=1e-3, lr=0.5)),
    ),
    OptimizerKind(
        "adamax", "Adamax",
        dict(lr=2e-3, betas=BETAS, eps=1e-8, weight_decay=0.0),
        state=("step", "exp_avg", "exp_inf"), rules=_adamax,
        symbols={**LR, **BETA, **EPS, **DECAY},
        macro="adamax",
        examples=({}, dict(weight_decay=0.1), dict(betas=(0.5, 0.9), eps=1e-3, lr=0.01)),
    ),
    OptimizerKind(
        "nadam", "NAdam",
        dict(lr=2e-3, betas=BETAS, eps=1e-8, weight_decay=0.0, momentum_decay=4e-3),
        state=("step", "mu_product", "exp_avg", "exp_avg_sq"), rules=_nadam,
        symbols={**LR, **BETA, **EPS, **DECAY, "momentum_decay": r"\psi"},
        macro="nadam",
        examples=({}, dict(weight_decay=0.1), dict(momentum_decay=0.05, betas=(0.8, 0.99), lr=0.01, eps=1e-3)),
    ),
)}

# Warm-up is not a schedule of its own: any schedule may carry it.
WARMUP_EQUATION = r"\eta_e = \eta_0 \, \frac{e + 1}{k + 1} \quad (e < k)"

SCHEDULES: dict[str, ScheduleKind] = {kind.name: kind for kind in (
    ScheduleKind(
        "step", "StepLR", dict(step_size=REQUIRED, gamma=0.1),
        equations=(r"\eta_e = \eta_0 \, g^{\lfloor e / s \rfloor}",),
        symbols={"gamma": "g", "step_size": "s"},
        macro="step_lr",
        examples=(dict(step_size=7), dict(step_size=3, gamma=0.5, warmup_epochs=4)),
    ),
    ScheduleKind(
        "multistep", "MultiStepLR", dict(milestones=REQUIRED, gamma=0.1),
        equations=(r"\eta_e = \eta_0 \, g^{|\{m \in M : m \le e\}|}",),
        symbols={"gamma": "g", "milestones": "M"},
        macro="multistep_lr",
        examples=(dict(milestones=[10, 30, 31]), dict(milestones=[2, 50], gamma=0.5, warmup_epochs=3)),
    ),
    ScheduleKind(
        "exponential", "ExponentialLR", dict(gamma=REQUIRED),
        equations=(r"\eta_e = \eta_0 \, g^e",),
        symbols={"gamma": "g"},
        macro="exponential_lr",
        examples=(dict(gamma=0.95), dict(gamma=0.9, warmup_epochs=1)),
    ),
    ScheduleKind(
        "cyclic", "CyclicLR",
        dict(base_lr=REQUIRED, max_lr=REQUIRED, step_size_up=2000, step_size_down=None,
             mode="triangular", gamma=1.0),
        equations=(
            r"c = \lfloor 1 + e / (s_\uparrow + s_\downarrow) \rfloor, \quad "
            r"x = 1 + e / (s_\uparrow + s_\downarrow) - c",
            r"h = x / r \text{ if } x \le r \text{ else } (x - 1) / (r - 1), \quad r = s_\uparrow / (s_\uparrow + s_\downarrow)",
            r"\eta_e = \eta_{\min} + (\eta_{\max} - \eta_{\min}) \, h \, "
            r"\begin{cases} 1 & \text{triangular} \\ 2^{1 - c} & \text{triangular2} \\ g^e & \text{exp\_range} \end{cases}",
        ),
        symbols={"base_lr": r"\eta_{\min}", "max_lr": r"\eta_{\max}", "step_size_up": r"s_\uparrow", "step_size_down": r"s_\downarrow", "gamma": "g"},
        macro="cyclic_lr",
        examples=(dict(base_lr=0.001, max_lr=0.1, step_size_up=10),
                  dict(base_lr=0.001, max_lr=0.1, step_size_up=5, step_size_down=15, mode="triangular2"),
                  dict(base_lr=0.01, max_lr=0.05, step_size_up=4, mode="exp_range", gamma=0.97),
                  dict(base_lr=0.001, max_lr=0.01, step_size_up=3, warmup_epochs=5)),
        optional=("step_size_down",),
    ),
    ScheduleKind(
        "cosine", "CosineAnnealingLR", dict(T_max=REQUIRED, eta_min=0.0),
        equations=(r"\eta_e = \eta_{\min} + (\eta_0 - \eta_{\min}) \, \tfrac12 (1 + \cos(\pi e / T_{\max}))",),
        symbols={"T_max": r"T_{\max}", "eta_min": r"\eta_{\min}"},
        macro="cosine_lr",
        examples=(dict(T_max=30), dict(T_max=10, eta_min=0.001, warmup_epochs=5)),
    ),
)}

DEFAULT_OPTIMIZER = {"type": "sgd", "lr": 0.01}  # when the spec has no [optimizer] table
TRAINING_DEFAULTS = dict(epochs=20, batch_size=32, clip_norm=None, clip_value=None, patience=None, seed=0,
                         init=None, bptt=None)


# ---------------------------------------------------------------------------------------------
# Weight initialization, as torch.nn.init draws it (fan_in = columns of W, fan_out = rows).
# Biases start at zero, except under "torch", nn.Linear's own default.
# ---------------------------------------------------------------------------------------------

INITS: dict[str, str] = {
    "xavier_uniform": "xavier_uniform_(gain): U(-a, a), a = gain * sqrt(6 / (fan_in + fan_out))",
    "xavier_normal": "xavier_normal_(gain): N(0, std^2), std = gain * sqrt(2 / (fan_in + fan_out))",
    "he_uniform": "kaiming_uniform_(mode='fan_in'): U(-a, a), a = gain * sqrt(3 / fan_in)",
    "he_normal": "kaiming_normal_(mode='fan_in'): N(0, std^2), std = gain / sqrt(fan_in)",
    "torch": "nn.Linear's default: W and b ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in))",
}
# The default init of a layer: He for the relu family, Xavier for the rest (tanh, sigmoid, identity,
# softmax, formulas). Those relu-like activations torch.nn.init has no gain for get relu's sqrt(2).
RELU_FAMILY = ("relu", "leaky_relu", "elu", "gelu", "silu", "mish", "softplus")


def init_gain(activation) -> float:
    """torch.nn.init.calculate_gain of a layer's activation (1 for one torch does not name)."""
    if activation.name == "leaky_relu":
        slope = dict(activation.params).get("slope", 0.01)
        return math.sqrt(2.0 / (1 + slope ** 2))
    if activation.name in RELU_FAMILY:
        return math.sqrt(2.0)
    return {"tanh": 5.0 / 3}.get(activation.name, 1.0)


def init_scheme(activation, init=None) -> tuple:
    """(scheme, gain) for a layer with ``activation``: ``init`` or the activation's default."""
    if init is None:
        init = "he_uniform" if activation.name in RELU_FAMILY else "xavier_uniform"
    return init, init_gain(activation)  # "torch" ignores the gain


# ---------------------------------------------------------------------------------------------
# Value rules: hyperparameter name -> (what it must be, test). One rule per name, everywhere.
# ---------------------------------------------------------------------------------------------

def _is_number(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _is_whole(v):
    return isinstance(v, int) and not isinstance(v, bool)


def _number(test):
    return lambda v: _is_number(v) and test(v)


def _whole(test):
    return lambda v: _is_whole(v) and test(v)


def _betas(v):
    return (isinstance(v, (list, tuple)) and len(v) == 2
            and all(_is_number(b) and 0 <= b < 1 for b in v))


def _milestones(v):
    return (isinstance(v, (list, tuple)) and len(v) > 0 and all(_is_whole(m) and m >= 1 for m in v)
            and list(v) == sorted(v))


RULES: dict[str, tuple[str, Callable]] = {
    "lr": ("a number >= 0", _number(lambda v: v >= 0)),
    "momentum": ("a number >= 0", _number(lambda v: v >= 0)),
    "dampening": ("a number in [0, 1]", _number(lambda v: 0 <= v <= 1)),
    "nesterov": ("true or false", lambda v: isinstance(v, bool)),
    "weight_decay": ("a number >= 0", _number(lambda v: v >= 0)),
    "lr_decay": ("a number >= 0", _number(lambda v: v >= 0)),
    "initial_accumulator_value": ("a number >= 0", _number(lambda v: v >= 0)),
    "eps": ("a number > 0", _number(lambda v: v > 0)),
    "alpha": ("a number in [0, 1)", _number(lambda v: 0 <= v < 1)),
    "centered": ("true or false", lambda v: isinstance(v, bool)),
    "betas": ("a pair of numbers in [0, 1), like [0.9, 0.999]", _betas),
    "amsgrad": ("true or false", lambda v: isinstance(v, bool)),
    "rho": ("a number in [0, 1]", _number(lambda v: 0 <= v <= 1)),
    "momentum_decay": ("a number >= 0", _number(lambda v: v >= 0)),
    # schedules
    "step_size": ("a whole number >= 1", _whole(lambda v: v >= 1)),
    "gamma": ("a number > 0", _number(lambda v: v > 0)),
    "milestones": ("an increasing list of whole numbers >= 1, like [10, 20]", _milestones),
    "base_lr": ("a number >= 0", _number(lambda v: v >= 0)),
    "max_lr": ("a number >= 0", _number(lambda v: v >= 0)),
    "step_size_up": ("a whole number >= 1", _whole(lambda v: v >= 1)),
    "step_size_down": ("a whole number >= 1", _whole(lambda v: v >= 1)),
    "mode": ("one of 'triangular', 'triangular2', 'exp_range'",
             lambda v: v in ("triangular", "triangular2", "exp_range")),
    "T_max": ("a whole number >= 1", _whole(lambda v: v >= 1)),
    "eta_min": ("a number >= 0", _number(lambda v: v >= 0)),
    "warmup_epochs": ("a whole number >= 0", _whole(lambda v: v >= 0)),
    # training
    "epochs": ("a whole number >= 1", _whole(lambda v: v >= 1)),
    "batch_size": ("a whole number >= 1 or \"full\"", lambda v: v == "full" or (_is_whole(v) and v >= 1)),
    "clip_norm": ("a number > 0", _number(lambda v: v > 0)),
    "clip_value": ("a number > 0", _number(lambda v: v > 0)),
    "patience": ("a whole number >= 1", _whole(lambda v: v >= 1)),
    "seed": ("a whole number >= 0", _whole(lambda v: v >= 0)),
    "init": ("one of " + ", ".join(repr(name) for name in INITS), lambda v: isinstance(v, str) and v.lower() in INITS),
    "bptt": ("a whole number >= 1 (steps per chunk of truncated backpropagation through time)",
             _whole(lambda v: v >= 1)),
}

#: Bounds on every hyperparameter, so the emitted code's arithmetic stays finite and exact: real
#: values (lr, eps, gamma, clip_norm, ...) are finite and of size at most MAX_REAL; whole numbers
#: (epochs, step sizes, milestones, patience, seed, ...) are at most MAX_WHOLE.
MAX_REAL = 10 ** 6
MAX_WHOLE = 2 ** 32 - 1


def _out_of_bounds(key, value) -> str:
    """The bound a number in ``value`` breaks (NaN and inf included), or '' when none does."""
    what = RULES[key][0]
    real, whole = key == "betas" or what.startswith("a number"), what.startswith(("a whole", "an increasing list"))
    for number in value if isinstance(value, (list, tuple)) else [value]:
        if real and _is_number(number) and not abs(number) <= MAX_REAL:
            return f"finite and of size at most {MAX_REAL}"
        if whole and _is_whole(number) and abs(number) > MAX_WHOLE:
            return f"at most {MAX_WHOLE} (2**32 - 1) in size"
    return ""


def _normalize(key, value):
    """Real-valued settings as floats and arrays as tuples, so they print and compare the same."""
    real = RULES[key][0].startswith("a number")
    if key == "betas":
        return tuple(float(b) for b in value)
    if isinstance(value, list):
        return tuple(value)
    if key == "init":
        return value.lower()  # He_Normal is he_normal, as every catalogue name is case-insensitive
    return float(value) if real else value


def _fill(raw: dict, defaults: dict, where: str, optional=()) -> dict:
    """Check ``raw``'s keys and values against ``defaults`` and RULES; fill in the rest."""
    for key in raw:
        if key not in defaults:
            raise unknown(f"{where} key", key, defaults)
    settings = {}
    for key, default in defaults.items():
        value = raw.get(key, default)
        if value is None:
            if key in optional:
                settings[key] = None
                continue
            what, _ = RULES[key]
            raise ChainruleError(f"{where} needs {key} ({what})")
        what, ok = RULES[key]
        bound = _out_of_bounds(key, value)
        if bound or not ok(value):
            raise ChainruleError(f"{where} {key} must be {bound or what}, not {shown(value)}")
        settings[key] = _normalize(key, value)
    return settings


def _table(tables, name):
    table = tables.get(name)
    if table is not None and not isinstance(table, dict):
        raise ChainruleError(f"[{name}] must be a table")
    return table


def validate_optimizer(raw) -> dict:
    """Normalized optimizer settings, ``{"type": name, **hyperparameters}``."""
    raw = dict(DEFAULT_OPTIMIZER if raw is None else raw)
    name = raw.pop("type", "sgd")
    name = name.lower() if isinstance(name, str) else name  # ADAM is adam
    if not isinstance(name, str) or name not in OPTIMIZERS:
        raise unknown("optimizer", name, OPTIMIZERS)
    settings = {"type": name, **_fill(raw, OPTIMIZERS[name].defaults, f"[optimizer] {name}")}
    if name == "sgd" and settings["nesterov"] and (settings["momentum"] <= 0 or settings["dampening"] != 0):
        raise ChainruleError("[optimizer] sgd nesterov needs momentum > 0 and dampening = 0")
    return settings


def validate_schedule(raw) -> dict | None:
    """Normalized schedule settings, ``{"type": name, **arguments, "warmup_epochs": k}``, or None."""
    if raw is None:
        return None
    raw = dict(raw)
    if "type" not in raw:
        raise ChainruleError(f"[schedule] needs type = one of: {', '.join(sorted(SCHEDULES))}")
    name = raw.pop("type")
    name = name.lower() if isinstance(name, str) else name
    if not isinstance(name, str) or name not in SCHEDULES:
        raise unknown("schedule", name, SCHEDULES)
    kind = SCHEDULES[name]
    settings = {"type": name, **_fill(raw, {**kind.defaults, "warmup_epochs": 0}, f"[schedule] {name}",
                                      kind.optional)}
    return settings


def validate_training(raw) -> dict:
    """Normalized [training] settings; ``batch_size`` None means the whole data set per step."""
    raw = dict(raw or {})
    optional = ("clip_norm", "clip_value", "patience", "init", "bptt")
    settings = _fill(raw, TRAINING_DEFAULTS, "[training]", optional=optional)
    if settings["clip_norm"] is not None and settings["clip_value"] is not None:
        raise ChainruleError("[training] clip_norm and clip_value exclude each other; keep one")
    if settings["batch_size"] == "full":
        settings["batch_size"] = None
    return settings


def validate(tables: dict) -> dict:
    """Settings for ``codegen.optim.render_optim`` from the raw spec tables (any may be missing)."""
    tables = tables or {}
    for key in tables:
        if key not in ("optimizer", "schedule", "training"):
            raise unknown("table", key, ("optimizer", "schedule", "training"))
    return {
        "optimizer": validate_optimizer(_table(tables, "optimizer")),
        "schedule": validate_schedule(_table(tables, "schedule")),
        "training": validate_training(_table(tables, "training")),
    }
