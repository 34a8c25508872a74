"""The performance targets of issue 6, judged against a run's figures (reported, never asserted)."""

HAND_RATIO = 1.05
MATMUL_FRACTION = 0.90
DEPTH_100_S = 2.0
HELP_S = 0.2
TRAIN_CLI_RATIO = 1.10
CNN_TORCH_RATIO = 1.0   # issue 12: the CNN step at most PyTorch eager's time
CNN_GEMM_FRACTION = 0.70
RNN_TORCH_RATIO = 1.0   # issue 13: each recurrent step at most PyTorch eager's time
ATTENTION_TORCH_RATIO = 1.0  # issue 14: the transformer block's step at most PyTorch eager's time
LARGER_NETS = ("mnist-mlp", "wide-tanh")
SMALLER_NETS = ("seed-2-2-1", "mnist-mlp")


def _row(rows, net, dtype, peer):
    for row in rows:
        if (row["net"], row["dtype"], row["peer"]) == (net, dtype, peer):
            return row
    return None


def judge(results: dict) -> list:
    """One entry per target and case: what, the target, the figure, met (True/False/None = not run)."""
    out = []

    def add(what, target, figure, met):
        out.append({"target": what, "wanted": target, "figure": figure, "met": met})

    step = results.get("train_step", {}).get("rows", [])
    cases = sorted({(r["net"], r["dtype"]) for r in step}, key=lambda c: (c[0] != "seed-2-2-1", c))
    for net, dtype in cases:
        ours = _row(step, net, dtype, "chainrule")
        name = f"{net} {dtype}"
        if ours is None:
            add(f"chainrule vs hand NumPy, {name}", f"<= {HAND_RATIO}x", "not run", None)
            continue
        ok = ours["grads_match"]
        # the training step: what train runs per batch, its inputs checked once before (the checked
        # loss_and_grads is reported beside it, in table 1b)
        trained = _row(step, net, dtype, "chainrule unchecked") or ours
        add(f"chainrule train step vs hand NumPy, {name}", f"<= {HAND_RATIO}x", f"{trained['ratio_to_hand']:.2f}x",
            trained["grads_match"] and trained["ratio_to_hand"] <= HAND_RATIO)
        if net in LARGER_NETS:
            add(f"chainrule matmul bound, {name}", f">= {MATMUL_FRACTION:.0%}", f"{ours['matmul_fraction']:.0%}",
                ok and ours["matmul_fraction"] >= MATMUL_FRACTION)
        peers = ["PyTorch", "autograd"] + (["jax.jit"] if net in SMALLER_NETS else [])
        for peer in peers:
            theirs = _row(step, net, dtype, peer)
            if theirs is None:
                add(f"chainrule faster than {peer}, {name}", "faster", f"{peer} not run", None)
                continue
            speedup = theirs["median_s"] / ours["median_s"]
            add(f"chainrule faster than {peer}, {name}", "faster", f"{speedup:.2f}x as fast",
                ok and speedup > 1.0)
    norm = results.get("layernorm", {}).get("rows", [])
    ours = _row(norm, "layernorm", "float32", "chainrule unchecked")
    for peer in ("hand NumPy", "PyTorch", "jax.jit"):
        theirs = _row(norm, "layernorm", "float32", peer)
        what = f"chainrule faster than {peer}, layernorm float32"
        if ours is None or theirs is None:
            add(what, "faster", "not run" if ours is None else f"{peer} not run", None)
            continue
        speedup = theirs["median_s"] / ours["median_s"]
        add(what, "faster", f"{speedup:.2f}x as fast", ours["grads_match"] and speedup > 1.0)
    cnn = results.get("cnn", {}).get("rows", [])
    ours = _row(cnn, "cnn", "float32", "chainrule unchecked")
    torch_row = _row(cnn, "cnn", "float32", "PyTorch")
    if ours is None or torch_row is None:
        add("chainrule CNN step vs PyTorch eager, float32", f"<= {CNN_TORCH_RATIO}x", "not run", None)
    else:
        ratio = ours["median_s"] / torch_row["median_s"]
        add("chainrule CNN step vs PyTorch eager, float32", f"<= {CNN_TORCH_RATIO}x", f"{ratio:.2f}x",
            ours["grads_match"] and ratio <= CNN_TORCH_RATIO)
    block = results.get("attention", {}).get("rows", [])
    mine, eager = _row(block, "attention", "float32", "chainrule unchecked"), _row(block, "attention", "float32", "PyTorch")
    what = "chainrule transformer-block step vs PyTorch eager, float32"
    if mine is None or eager is None:
        add(what, f"<= {ATTENTION_TORCH_RATIO}x", "not run", None)
    else:
        ratio = mine["median_s"] / eager["median_s"]
        add(what, f"<= {ATTENTION_TORCH_RATIO}x", f"{ratio:.2f}x", mine["grads_match"] and ratio <= ATTENTION_TORCH_RATIO)
    if ours is not None:
        add("chainrule CNN step, GEMM bound", f">= {CNN_GEMM_FRACTION:.0%}", f"{ours['gemm_fraction']:.0%}",
            ours["grads_match"] and ours["gemm_fraction"] >= CNN_GEMM_FRACTION)
    recurrent = results.get("rnn", {}).get("rows", [])
    for net in dict.fromkeys(r["net"] for r in recurrent):
        ours = _row(recurrent, net, "float32", "chainrule unchecked")
        what = f"chainrule recurrent step vs PyTorch eager, {net} float32"
        if ours is None or ours["ratio_to_torch"] is None:
            add(what, f"<= {RNN_TORCH_RATIO}x", "not run", None)
            continue
        add(what, f"<= {RNN_TORCH_RATIO}x", f"{ours['ratio_to_torch']:.2f}x",
            ours["grads_match"] and ours["ratio_to_torch"] <= RNN_TORCH_RATIO)
    for section, wanted in (("cnn", CNN_TORCH_RATIO), ("attention", ATTENTION_TORCH_RATIO), ("rnn", RNN_TORCH_RATIO)):
        for row in results.get(section, {}).get("fresh", []):
            if row["peer"] == "chainrule unchecked":
                figure = row.get("ratio_to_torch")
                add(f"chainrule {row['net']} step vs PyTorch eager, each in a fresh process, float32", f"<= {wanted}x",
                    f"{figure:.2f}x" if figure else "not run", figure <= wanted if figure else None)
    staged = {r["depth"]: r for r in results.get("derivation", {}).get("staged", [])}
    deep = staged.get(100, {})
    if "generate_s" in deep:
        add("derive + generate at depth 100", f"< {DEPTH_100_S:g} s", f"{deep['total_s']:.2f} s",
            deep["total_s"] < DEPTH_100_S)
    else:
        add("derive + generate at depth 100", f"< {DEPTH_100_S:g} s", "not run", None)
    startup = {r["command"]: r for r in results.get("startup", {}).get("rows", [])}
    helped = startup.get("chainrule --help")
    add("chainrule --help", f"< {HELP_S:g} s", f"{helped['median_s']:.3f} s" if helped else "not run",
        helped["median_s"] < HELP_S if helped else None)
    for row in results.get("train_cli", {}).get("rows", [])[1:]:
        add(f"{row['peer']} vs the emitted train", f"<= {TRAIN_CLI_RATIO}x", f"{row['ratio']:.2f}x",
            row["ratio"] <= TRAIN_CLI_RATIO)
    if "train_cli" in results and not results["train_cli"]["rows"]:
        add("chainrule train vs the emitted train", f"<= {TRAIN_CLI_RATIO}x", "not run", None)
    return out
