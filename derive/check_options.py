"""Command-line options of ``chainrule check`` (kept free of SymPy so ``--help`` stays fast)."""

CONVENTIONS = ("sample", "columns", "rows")


def add_check_arguments(parser) -> None:
    parser.add_argument("--wrt", help="the quantity the gradient is of: W2, b1, delta1, dL/dz1, ...")
    parser.add_argument("--grad", help="your expression, in LaTeX or plain math")
    parser.add_argument("--file", help="a file of lines 'QUANTITY = EXPRESSION' to check together")
    parser.add_argument("--convention", choices=CONVENTIONS, default="sample",
                        help="sample (default: one sample as a column), columns (batch as columns of X), "
                             "rows (batch-first, as in the generated code)")
