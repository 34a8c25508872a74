"""Section 4: start-up, each command in a fresh process, median wall time.

``chainrule`` is the console script beside this Python (not a pyenv shim, whose own start-up
would swamp the figure); bare ``python`` and ``import numpy`` are there for scale.
"""
import shutil
import subprocess
import sys
import time
from pathlib import Path

from nets import NETS, REPO, Unavailable, write_emitted


def chainrule_command() -> list:
    script = Path(sys.executable).parent / "chainrule"
    if script.exists():
        return [str(script)]
    found = shutil.which("chainrule")
    return [found] if found else [sys.executable, "-m", "codegen.cli"]


def commands() -> tuple:
    seed = NETS[0]
    chainrule = chainrule_command()
    table = {
        "python -c pass": [sys.executable, "-c", "pass"],
        "python -c 'import numpy'": [sys.executable, "-c", "import numpy"],
        "chainrule --help": chainrule + ["--help"],
        f"chainrule derive '{seed.spec}'": chainrule + ["derive", seed.spec],
    }
    skipped = {}
    try:
        path = write_emitted(seed.spec, "float64", "startup_seed")
        table["import <emitted 2-2-1 module>"] = [
            sys.executable, "-c", f"import sys; sys.path.insert(0, {str(path.parent)!r}); import startup_seed"]
    except Unavailable as err:
        skipped["import <emitted 2-2-1 module>"] = str(err)
    return table, skipped


def run(quick: bool) -> dict:
    table, skipped = commands()
    repeats = 5 if quick else 11
    samples = {name: [] for name in table}
    for _ in range(repeats):
        for name, argv in table.items():   # interleaved
            start = time.perf_counter()
            done = subprocess.run(argv, capture_output=True, cwd=REPO)
            samples[name].append(time.perf_counter() - start)
            if done.returncode != 0:
                skipped[name] = f"exit {done.returncode}: {done.stderr.decode(errors='replace').strip()[-300:]}"
    rows = [{"command": name, "median_s": sorted(s)[len(s) // 2], "min_s": min(s), "runs": len(s)}
            for name, s in samples.items() if name not in skipped]
    print("  start-up: done", file=sys.stderr, flush=True)
    return {"rows": rows, "skipped": skipped, "chainrule": " ".join(chainrule_command())}
