"""Command-line options of ``chainrule check`` (kept free of SymPy so ``--help`` stays fast), and the
table of conventions a derivation may be written in."""
import argparse
import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Convention:
    """A way of writing backprop: whose it is, the names it uses, where the mean's 1/N lives, and the
    marks in a person's text that say it is this one (``signs``, a regex, and them in words)."""
    name: str
    source: str
    names: str
    mean: str
    signs: str = ""
    shown_signs: str = ""
    # only by its marks (or by name): its names are other conventions' names at other layers or transposed,
    # so an off-by-one layer or a missing transpose would be "right" in it
    marked_only: bool = False


TABLE = (
    Convention("sample", "Nielsen's book, cs231n and UFLDL for one example",
               "x, y, z^l = W^l a^{l-1} + b^l, a^l = σ(z^l), δ^l = ∂C/∂z^l, ∂C/∂W^l = δ^l (a^{l-1})ᵀ",
               "nowhere: one sample's cost C_x, no 1/N"),
    Convention("columns", "chainrule's batch form (its notes)",
               "X, Y (features × N), Z_l = W_l A_{l-1} + b_l 1ᵀ, A_l (H_l), Δ_l = ∂L/∂Z_l, dZ_l, N",
               "inside Δ_L (= (Ŷ − Y)/N for the mean loss), so ∂L/∂W_l = Δ_l A_{l-1}ᵀ has none",
               r"(?<![A-Za-z\\])(?:[XZAHY]|Delta|N)(?![a-z])|\\Delta", "capital batch names (X, Z_l, Δ_l, N)"),
    Convention("rows", "batch-first code (the generated module, PyTorch)",
               "X (N × features), Z_l = X W_lᵀ + b_l, Delta_l (N × units), dW_l = Delta_lᵀ A_{l-1}, sums axis=0",
               "inside Delta_L, as in columns",
               r"axis\s*=\s*0|[A-Z]\w*\s*@\s*W\w*\.T|[A-Z]\w*\.T\s*@\s*[A-Z]", "batch-first products (X @ W.T, axis=0)"),
    Convention("ng", "deeplearning.ai (Andrew Ng)",
               "X (n_x × m), Z^{[l]}, A^{[l]}, dZ^{[l]} = W^{[l+1]T} dZ^{[l+1]} * g^{[l]}'(Z^{[l]}), dA^{[l]}, "
               "dW^{[l]}, db^{[l]}, m; two n × m matrices side by side (or with \\times, \\cdot) are multiplied "
               "element by element (dZ = dA g'(Z)), as their matrix product cannot fit",
               "in dW and db only: dZ^{[L]} = A^{[L]} − Y (dZ and dA are m × ∂J/∂Z), dW^{[l]} = (1/m) dZ^{[l]} "
               "A^{[l-1]T}, db^{[l]} = (1/m) Σ dZ^{[l]}",
               r"\[\s*(?:[lL]|\d+)\s*(?:[+-]\s*\d+\s*)?\]|(?<![A-Za-z\\])d[ZAX](?![a-z])",
               "[l] layer marks or dZ, dA"),
    Convention("goodfellow", "Goodfellow, Bengio and Courville, Deep Learning, Algorithm 6.4",
               "x, a^{(k)} = b^{(k)} + W^{(k)} h^{(k-1)} (the pre-activation), h^{(k)} = f(a^{(k)}), "
               "∇_{W^{(k)}} J = g h^{(k-1)T}, g the gradient of the line before (g ← g ⊙ f'(a^{(k)}))",
               "in J: one example, no 1/N",
               r"\\nabla|∇|\\leftarrow|←|\^\{?\(\s*k", "∇, ← or a layer written (k)"),
    Convention("ng_rows", "Ng's names batch-first (42-school MLP projects, Keras-style notes)",
               "X (m × n_x), Z^{[l]} = A^{[l-1]} W^{[l]} + b^{[l]} with W^{[l]} (n^{[l-1]} × n^{[l]}), "
               "dZ^{[l-1]} = dZ^{[l]} W^{[l]T} * g'(Z^{[l-1]}); two m × n matrices side by side are multiplied "
               "element by element, as in ng",
               "as in ng: dZ^{[L]} = A^{[L]} − Y, dW^{[l]} = (1/m) A^{[l-1]T} dZ^{[l]}, db^{[l]} = (1/m) Σ dZ^{[l]}",
               marked_only=True),
    Convention("ufldl", "Stanford's UFLDL tutorial (Ng's CS294A notes)",
               "a^{(1)} = x, z^{(l+1)} = W^{(l)} a^{(l)} + b^{(l)} (W^{(l)} leaves layer l), δ^{(l)} = ∂J/∂z^{(l)}, "
               "layer n_l the output",
               "nowhere for one example's J(W,b;x,y); the batch's J averages them",
               r"s_\{?l\s*\+\s*1|n_\{?l\b", "s_{l+1} or n_l", marked_only=True),
    Convention("rowgrad", "numerator layout (δ a row vector; derivations after the Jacobian, e.g. Kyle Lo's)",
               "z^{(l)} = w_l^T h^{(l-1)} + b_l with w_l (m_{l-1} × m_l), δ^{(l)} = ∂L/∂z^{(l)}, a 1 × m_l row, "
               "∂L/∂w_l = h^{(l-1)} δ^{(l)} (summed over samples i: Σ_{i=1}^n h_i^{(l-1)} δ_i^{(l)})",
               "nowhere: one sample's cost, and a sum over the samples", marked_only=True),
    Convention("vaswani", "Vaswani et al. and courses on attention (networks with an attention layer only)",
               "one sample, positions as rows: Q = X W_Q with W_Q (E × d_k), the transpose of torch's in_proj_weight "
               "rows; dW_Q = Xᵀ dQ, dX = dQ W_Qᵀ + dK W_Kᵀ + dV W_Vᵀ; otherwise as sample",
               "nowhere: one sample's cost"),
)
CONVENTIONS = tuple(c.name for c in TABLE)
BY_NAME = {c.name: c for c in TABLE}
CHOICES = ("auto",) + CONVENTIONS


def ranked(texts) -> list:
    """(convention, why) in the order ``auto`` tries them for these texts: those whose marks appear, in
    the table's reverse order (the most specific first), then the others in the table's order, except those
    tried only by their marks."""
    text = " ".join(texts)
    marked = [(c.name, f"the names use {c.shown_signs}") for c in reversed(TABLE) if c.signs and re.search(c.signs, text)]
    rest = [(c.name, "the names carry no mark of another convention" if c.name == "sample" else "its shapes fit")
            for c in TABLE if c.name not in dict(marked) and not c.marked_only]
    return marked + rest


def convention_table() -> str:
    """The conventions as ``check --help`` prints them."""
    lines = ["conventions (--convention; auto, the default, picks one by the names you use and says which):"]
    for c in TABLE:
        lines += [f"  {c.name:<10} {c.source}", f"             names: {c.names}", f"             1/N:   {c.mean}"]
        if c.marked_only:
            lines.append(f"             auto:  {'only where ' + c.shown_signs + ' appear' if c.signs else 'never; choose it by name'}")
    return "\n".join(lines)

#: The calling convention check-code holds a backward pass to (``check-code --help`` prints it).
BACKWARD_CONTRACT = """\
The calling convention, batch-first like the generated module (N samples as rows):

    def backward(params, cache, X, T) -> dict:
        params  {"W1": (out, in), "b1": (out,), "W2": ..., ...}      float64 arrays
        cache   {"X": (N, in), "Z1": (N, n1), "A1": (N, n1), ..., "ZL": (N, out), "Yhat": (N, out)}
                (A_l of a hidden identity layer is Z_l; Yhat is the output after its activation;
                M_l, (N, n_l), is the inverted-dropout mask of a layer with dropout: A_l = f(Z_l) * M_l)
                a layer norm l has params gammal, betal (n_l,) and cache mul, sigmal (N, 1) (sigma
                = sqrt(var + eps)), Xhatl (N, n_l) and its output Al; it returns gammal, betal too
        X       (N, in) inputs; T (N, out) targets (one-hot rows for cross-entropy)
        returns {"W1": dL/dW1 (out, in), "b1": dL/db1 (out,), ...}

A network with convolutions, pooling or batch norm (conv2d, conv1d, maxpool2d, avgpool2d,
global_avgpool, flatten, batchnorm, dense) has the layouts of --op below:
        params  a convolution l's Wl (F, C, HH, WW) and bl (F,); a batch norm l's gammal, betal (C,)
        cache   X and every forward value batch-first: Zl, Al, Xhatl (N, C, H, W) after a convolution,
                pooling or batch norm of images, (N, n) after a dense layer (Al of a layer without
                activation is Zl; flatten adds no entry: reshape the A before it to (N, -1)); a batch
                norm l's mul, varl, sigmal (C,) (sigma = sqrt(var + eps), the batch's biased variance)
        the gradients of every parameter are checked (not dL/dX), and the usual mistakes of --op
        conv2d, maxpool2d, avgpool2d and batchnorm are named once, at the first gradient they reach.

The returned keys may also be spelt dW1, dL_dW1 or grad_W1; a bias gradient may be
(out,), (1, out) or (out, 1). When the dict also has X (dX, dL_dX), dL/dX,
(N, in), is checked too. The loss is the spec's, reduction included (a mean over
the batch gives the gradients a 1/N).
"""


#: The calling conventions of one op's backward function, ``check-code --op NAME FILE.py:FUNCTION``.
OP_CONTRACT = """\
With --op NAME, one op's backward function, batch-first (N samples as rows), cs231n's layouts:

    affine      f(dout, x, w, b) -> (dx, dw, db)    out = x @ w + b; x (N, D), w (D, M), b (M,)
    ACTIVATION  f(dout, x) -> dx                    out = f(x) element-wise; x (N, D) the op's input
                (relu, sigmoid, tanh, leaky_relu, elu, softplus, gelu, silu, with their defaults)
    softmax     f(x, y) -> dx or (loss, dx)         loss = the mean over the batch of -log softmax(x)[y];
                                                    x (N, C) scores, y (N,) integer labels
    layernorm   f(dout, x, gamma, beta) -> (dx, dgamma, dbeta)
                                                    each row normalized over its D features, eps = 1e-5,
                                                    the biased variance; gamma, beta (D,)

    conv2d      f(dout, x, w, b, conv_param) -> (dx, dw, db)
                                                    x (N, C, H, W), w (F, C, HH, WW), b (F,), conv_param
                                                    {"stride": 2, "pad": 1} (zeros); dout (N, F, H', W')
    maxpool2d   f(dout, x, pool_param) -> dx        pool_param {"pool_height": 2, "pool_width": 2, "stride": 2};
    avgpool2d   f(dout, x, pool_param) -> dx        x (N, C, H, W); max: dout to the first maximum of a window
    batchnorm   f(dout, x, gamma, beta, bn_param) -> (dx, dgamma, dbeta)
                                                    training mode: x (N, D), the batch's mean and biased
                                                    variance; bn_param {"mode": "train", "eps": 1e-5}
    spatial_batchnorm  the same on x (N, C, H, W), gamma, beta (C,): statistics per channel

    rnn_step    f(dnext_h, x, prev_h, Wx, Wh, b) -> (dx, dprev_h, dWx, dWh, db)
                                                    next_h = tanh(x @ Wx + prev_h @ Wh + b); x (N, D),
                                                    prev_h (N, H), Wx (D, H), Wh (H, H), b (H,)
    rnn         f(dh, x, h0, Wx, Wh, b) -> (dx, dh0, dWx, dWh, db)
                                                    the rnn_step at t = 1..T from h0; x (N, T, D), dh (N, T, H)
                                                    the upstream gradient of every h_t
    lstm_step   f(dnext_h, dnext_c, x, prev_h, prev_c, Wx, Wh, b) -> (dx, dprev_h, dprev_c, dWx, dWh, db)
                                                    a = x @ Wx + prev_h @ Wh + b, (N, 4H), gates i, f, o, g in
                                                    cs231n's order (sigmoid, sigmoid, sigmoid, tanh);
                                                    next_c = f*prev_c + i*g, next_h = o*tanh(next_c)
    lstm        f(dh, x, h0, Wx, Wh, b) -> (dx, dh0, dWx, dWh, db)
                                                    the lstm_step at t = 1..T from h0 and c0 = 0
    gru_step    f(dnext_h, x, prev_h, Wx, Wh, bx, bh) -> (dx, dprev_h, dWx, dWh, dbx, dbh)
                                                    torch.nn.GRU's equations and gate order r, z, n: a = x @ Wx + bx,
                                                    ah = prev_h @ Wh + bh, (N, 3H); r, z = sigmoid(a + ah) (first two
                                                    blocks), n = tanh(a_n + r*ah_n), next_h = (1-z)*n + z*prev_h;
                                                    Wx (D, 3H), Wh (H, 3H), bx, bh (3H,)
    gru         f(dh, x, h0, Wx, Wh, bx, bh) -> (dx, dh0, dWx, dWh, dbx, dbh)
                                                    the gru_step at t = 1..T from h0
                (D = 4, H = 5, T = 3, N = 3; the function may return a dict keyed by the names below; a
                gradient clipped inside the backward, np.clip(dWx, -c, c) for c = 1, 5 or 10, is named so)

    attention   f(dout, q, k, v, mask) -> (dq, dk, dv)  out = softmax(q kᵀ/√d_k + mask) v, each row of the scores
                                                    normalized over the keys, for every sample and head; q, k, v,
                                                    dout (N, H, T, d_k), heads already split; mask (T, T) bool,
                                                    True = ignore (CMU 11-785's and torch's), the causal triangle
    mha         f(dout, x, in_proj_weight, in_proj_bias, out_proj_weight, out_proj_bias, num_heads, mask)
                -> (dx, din_proj_weight, din_proj_bias, dout_proj_weight, dout_proj_bias)
                                                    torch.nn.MultiheadAttention(E, num_heads, batch_first=True) as
                                                    self-attention, mha(x, x, x, attn_mask=mask), torch's parameters:
                                                    q, k, v = x @ W_Q.T + b_Q, ... with in_proj_weight = [W_Q; W_K; W_V]
                                                    (3E, E), split into heads (N, H, T, d), attention per head, the
                                                    heads merged, @ out_proj_weight.T + out_proj_bias; x, dout (N, T, E)
                (N = 3, H = 2, T = 3, d_k = 4; the function may return a dict keyed by the names below)

Names of BPTT, as courses write them, in chainrule's terms (torch's W_ih, W_hh; cs231n's Wx = W_ihᵀ):
    Wx, W_xh, Wxh, Wax, U   input-to-hidden W_ih      Wh, W_hh, Whh, Waa, W   hidden-to-hidden W_hh
    dWx, dWxh, dWax     Σ_t δ_t x_tᵀ                      dWh, dWhh, dWaa     Σ_t δ_t h_(t-1)ᵀ
    dh_next, dhnext     the share step t + 1 sends back, W_hhᵀ δ_(t+1) (Karpathy's dhnext, cs231n's
                        dprev_h of step t + 1), added to the output's dh[:, t] to give δh_t
    dbx, db_ih / dbh, db_hh   the GRU's two biases' gradients: Σ_t δ^x_t and Σ_t δ^h_t (their n blocks differ by r)
    dh_prev, dprev_h    what step t sends back to step t − 1 (Ng's da_prev; his a is h); dh0, da0: step 1's
    δ_t, delta_t, da    the step's pre-activation error, δh_t ⊙ (1 − h_t²) (an LSTM's: its gates', stacked)
    dc, dnext_c, dprev_c   the LSTM's cell-state path: δc_t = δh_t ⊙ o ⊙ (1 − tanh²(c_t)) + f_(t+1) ⊙ δc_(t+1)

Names of attention (the notes' Q = X W_Qᵀ, K, V; one head's q, k, v are its columns of them):
    Q, K, V, query, key, value   q, k, v      W_Q, W_K, W_V, Wq   the projections (torch's in_proj_weight)
    S, scores, scaled_dot_product   q kᵀ/√d_k (+ mask)   d_k, d   the head's width (E = H d); \\sqrt{d_k}, √d_k its root
    A, P, attn, weights, attention_scores   softmax(S) row by row (CMU 11-785 calls A attention_scores)
    dQ, d_Q, grad_Q, dq   dS k/√d_k    dK, d_K, grad_K   dSᵀ q/√d_k    dV, d_V, grad_V   Aᵀ dout
    dS, dP, dA (of the scores, of A)   dA = dout vᵀ, dS = A ⊙ (dA − rowsum(dA ⊙ A))
    dW_in, dW_qkv, dc_attn_w   din_proj_weight      dW_out, dW_O, dWo, dc_proj_w   dout_proj_weight (mha)

dout is the upstream gradient dL/dout, (N, M) or (N, D). Wrap another layout in an adapter
function (README: check-code --op); cs231n's f(dout, cache) needs the forward's cache, built in it
(rnn_step: _, cache = rnn_step_forward(x, prev_h, Wx, Wh, b); return rnn_step_backward(dnext_h, cache)).
"""


def add_check_arguments(parser) -> None:
    parser.add_argument("--wrt", help="the quantity the gradient is of: W2, b1, h1, z1 (= delta1), x, or the "
                                      "gradient's own name: delta1, dL/dz1, dL/dx, \\frac{\\partial L}{\\partial W_2}; "
                                      "with l for a rule checked at every layer: delta^l, dL/dW^{[l]}")
    parser.add_argument("--grad", help="your expression, in LaTeX ('\\delta_2 h_1^\\top', "
                                       "'(W_2^T \\delta_2) \\odot \\sigma'(z_1)') or plain math "
                                       "('delta2 @ h1.T', 'sum(delta1, axis=1)', 'np.where(z1 > 0, 1, 0)', "
                                       "'np.clip(yhat - y, -1, 1)'), or a rule in l ('(W^{l+1})^T delta^{l+1} "
                                       "* f'(z^l)'); nothing in it is run")
    parser.add_argument("--file", help="a file of lines 'QUANTITY = EXPRESSION' (LaTeX align lines too) "
                                       "to check together")
    parser.add_argument("--names", action="store_true",
                        help="list the names check reads for this network (in the --convention) and exit")
    parser.add_argument("--convention", choices=CHOICES, default="auto",
                        help="auto (default: the one whose names you use), sample (one sample as a column), columns "
                             "(batch as columns of X), rows (batch-first, as in the generated code), ng "
                             "(deeplearning.ai), goodfellow (Deep Learning's Algorithm 6.4), ng_rows, ufldl, rowgrad, vaswani "
                             "(attention's W_Q as the paper's); "
                             "see the table below")
    parser.epilog = convention_table()
    parser.formatter_class = argparse.RawDescriptionHelpFormatter


#: The names people write for BPTT (cs231n, Karpathy's min-char-rnn, deeplearning.ai's a for h) -> each recurrent op's
#: output: an op function may return a dict with any of them (the first found wins) instead of a tuple.
#: Karpathy's dhnext is what step t sends back to step t - 1 (read there as the "next" step's share).
RECURRENT_NAMES = {
    "dx": ("dx", "dX", "dxs", "dxt", "dx_t", "dinputs"),
    "dprev_h": ("dprev_h", "dh_prev", "dhprev", "dh_next", "dhnext", "da_prev", "dh_prev_t", "dh_tm1"),
    "dh0": ("dh0", "dh_0", "da0", "dh_init", "dprev_h", "dh_prev", "dhnext", "dh_next"),
    "dprev_c": ("dprev_c", "dc_prev", "dcprev", "dc_next", "dcnext", "dc_tm1"),
    "dWx": ("dWx", "dWxh", "dW_xh", "dWax", "dW_ih", "dWih", "dU", "dWx_t"),
    "dWh": ("dWh", "dWhh", "dW_hh", "dWaa", "dWh_t"),
    "db": ("db", "dbh", "db_h", "dba", "db_ih", "dbias"),
    "dbx": ("dbx", "db_x", "db_ih", "dbih", "dbias_ih"),
    "dbh": ("dbh", "db_h", "db_hh", "dbhh", "dbias_hh"),
}


#: The names people write for attention's gradients (CMU 11-785's d_Q, Karpathy-style dq, grad_Q) -> the op's
#: outputs: an attention function may return a dict with any of them (the first found wins) instead of a tuple.
ATTENTION_NAMES = {
    "dq": ("dq", "dQ", "d_Q", "d_q", "grad_Q", "grad_q", "dquery", "d_query"),
    "dk": ("dk", "dK", "d_K", "grad_K", "grad_k", "dkey", "d_key"),
    "dv": ("dv", "dV", "d_V", "d_v", "grad_V", "grad_v", "dvalue", "d_value"),
    "dx": ("dx", "dX", "d_x", "grad_x", "dinput"),
    "din_proj_weight": ("din_proj_weight", "d_in_proj_weight", "dW_in", "dW_qkv", "dWqkv", "dc_attn_w"),
    "din_proj_bias": ("din_proj_bias", "d_in_proj_bias", "db_in", "db_qkv", "dbqkv", "dc_attn_b"),
    "dout_proj_weight": ("dout_proj_weight", "d_out_proj_weight", "dW_out", "dW_O", "dWo", "dc_proj_w"),
    "dout_proj_bias": ("dout_proj_bias", "d_out_proj_bias", "db_out", "db_O", "dbo", "dc_proj_b"),
}
