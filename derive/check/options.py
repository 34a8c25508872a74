"""Command-line options of ``chainrule check`` (kept free of SymPy so ``--help`` stays fast)."""

CONVENTIONS = ("sample", "columns", "rows")

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

dout is the upstream gradient dL/dout, (N, M) or (N, D). Wrap another layout in an adapter
function (README: check-code --op).
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
    parser.add_argument("--convention", choices=CONVENTIONS, default="sample",
                        help="sample (default: one sample as a column), columns (batch as columns of X), "
                             "rows (batch-first, as in the generated code)")
