"""The optimizer, learning-rate schedule and gradient clipping of an emitted training module.

Interface (one function)::

    render_optim(settings: dict, header: bool = True) -> str

``settings`` is what ``derive.optim.validate(tables)`` returns. The result is Python source that
needs only ``math`` and ``numpy as np`` (``header=True`` puts the two imports on top; pass
``header=False`` when pasting it into a module that imports them already). It defines:

- ``class <TorchName>`` (``SGD``, ``Adam``, ...): ``__init__(self, params, **hyperparameters)``
  with the spec's values as keyword defaults, attribute ``lr`` (the current rate), and
  ``step(self, params, grads)`` updating the arrays of ``params`` in place, where ``params``
  and ``grads`` are dicts ``{name: ndarray}`` with the same keys;
- ``make_optimizer(params)``: that class with the spec's hyperparameters;
- ``class <TorchSchedulerName>`` (``StepLR``, ...) when there is a schedule: ``__init__`` sets
  ``optimizer.lr`` for epoch 0 and ``step()``, called once after each epoch, sets it for the
  next epoch, as the torch scheduler stepped once per epoch;
- ``make_schedule(optimizer)``: that schedule, or None when the spec has none;
- ``clip_gradients(grads)``: clips the dict of gradients in place as configured in
  ``[training]`` (``clip_norm`` or ``clip_value``, else nothing) and returns the global L2
  norm measured before clipping.

A training loop calls, per batch, ``clip_gradients(grads); optimizer.step(params, grads)``
and, per epoch, ``if schedule is not None: schedule.step()``.

Each piece is one macro in ``templates/optim.py.jinja`` (named by the catalogue entry in
``derive.optim``), so a template can also ``{% import "optim.py.jinja" as optim %}`` and call
``optim.adam(settings.optimizer)`` itself; this function only picks the macros.
"""
from codegen.env import ENV
from derive.optim import OPTIMIZERS, SCHEDULES

HEADER = "import math\n\nimport numpy as np\n"


def render_optim(settings: dict, header: bool = True) -> str:
    """Source of the optimizer, schedule and clipping chosen by validated ``settings``."""
    macros = ENV.get_template("optim.py.jinja").make_module()
    optimizer = settings["optimizer"]
    schedule = settings.get("schedule")
    kind = OPTIMIZERS[optimizer["type"]]
    optimizer_source = getattr(macros, kind.macro)(optimizer)
    parts = [optimizer_source,
             f"def make_optimizer(params):\n    return {_class_name(optimizer_source)}(params)\n"]
    if schedule is None:
        parts.append("def make_schedule(optimizer):\n    return None  # the spec sets no [schedule]\n")
    else:
        schedule_source = getattr(macros, SCHEDULES[schedule["type"]].macro)(schedule)
        parts += [schedule_source,
                  f"def make_schedule(optimizer):\n    return {_class_name(schedule_source)}(optimizer)\n"]
    parts.append(macros.clip_gradients(settings["training"]))
    body = "\n\n".join(str(part).strip("\n") + "\n" for part in parts)
    return (HEADER + "\n\n" + body) if header else body


def _class_name(source) -> str:
    """The name in the first ``class Name:`` line of emitted source."""
    first = next(line for line in str(source).splitlines() if line.startswith("class "))
    return first[len("class "):].split(":")[0].split("(")[0]
