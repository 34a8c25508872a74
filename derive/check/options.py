"""Command-line options of ``chainrule check`` (kept free of SymPy so ``--help`` stays fast)."""

CONVENTIONS = ("sample", "columns", "rows")


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
    parser.add_argument("--convention", choices=CONVENTIONS, default="sample",
                        help="sample (default: one sample as a column), columns (batch as columns of X), "
                             "rows (batch-first, as in the generated code)")
