"""The emitted module keeps a train step's freed memory for the next step (glibc's malloc would hand it back
to the system and page-fault it in again): counted as minor page faults in a fresh process that has loaded
nothing but NumPy and the gallery's transformer, at a batch whose arrays are each over malloc's 128 KiB."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

GALLERY = Path(__file__).resolve().parent.parent / "generated"

STEPS = """
import importlib.util, json, resource, sys
spec = importlib.util.spec_from_file_location("m", sys.argv[1])
m = importlib.util.module_from_spec(spec)
spec.loader.exec_module(m)
X, T = m._demo_data(512)
params, X, Y = m._checked(m.init_params(seed=0), X, T)
for _ in range(3):
    m._loss_and_grads(params, X, Y)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
    m._loss_and_grads(params, X, Y)
after = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
print(json.dumps({"faults": (after - before) / 10, "loaded": sorted(k for k in ("sympy", "torch", "jax") if k in sys.modules)}))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc and ru_minflt are Linux's")
def test_a_train_step_reuses_the_memory_of_the_last():
    out = subprocess.run([sys.executable, "-c", STEPS, str(GALLERY / "tiny_transformer.py")], capture_output=True,
                         text=True, check=True, timeout=120)
    result = json.loads(out.stdout)
    assert result["loaded"] == []              # a process of NumPy alone, where nothing else warmed malloc up
    # without the module's one freed block, about 2000 faults a step here (each step's ~60 large arrays)
    assert result["faults"] < 20, result
