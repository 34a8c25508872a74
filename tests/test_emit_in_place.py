"""The emitter's in-place rules reuse an array only when nothing reads it afterwards."""
from codegen.emit import Line, _multiply_dead, _reuse_dead


def lines(*texts):
    return [Line(lhs, rhs, 1, op) for lhs, op, rhs in (t.split(" ", 2) for t in texts)]


def shown(out):
    return [f"{line.lhs} {line.op} {line.rhs}" for line in out]


def test_a_dead_array_takes_the_product():
    out = _multiply_dead(lines("D = G @ W", "E = D * (A > 0)", "dW = E.T @ X"), keep=[])
    assert shown(out) == ["D = G @ W", "E = D", "E *= (A > 0)", "dW = E.T @ X"]


def test_an_array_read_later_or_kept_or_not_made_here_is_not_overwritten():
    read_later = lines("D = G @ W", "E = D * (A > 0)", "dW = D.T @ X")
    assert shown(_multiply_dead(read_later, keep=[])) == shown(read_later)
    kept = lines("dL_db = G @ W", "E = dL_db * (A > 0)")
    assert shown(_multiply_dead(kept, keep=["dL_db"])) == shown(kept)
    cached = lines("E = A3", "F = E * (A > 0)")  # E is the cache's A3: not this function's to overwrite
    assert shown(_multiply_dead(cached, keep=[])) == shown(cached)
    unbalanced = lines("D = G @ W", "E = D * (a) + (b)")
    assert shown(_multiply_dead(unbalanced, keep=[])) == shown(unbalanced)


def test_a_repeated_right_side_reuses_a_dead_temporary_only():
    out = _reuse_dead(lines("t0 = A - m", "s = f(t0)", "X = A - m", "X *= s"))
    assert shown(out) == ["t0 = A - m", "s = f(t0)", "X = t0", "X *= s"]
    reassigned = lines("t0 = A - m", "m = g(t0)", "X = A - m")
    assert shown(_reuse_dead(reassigned)) == shown(reassigned)
    read_after = lines("t0 = A - m", "X = A - m", "Y = t0 + X")
    assert shown(_reuse_dead(read_after)) == shown(read_after)
