"""Command-line options of ``chainrule generate`` (kept free of SymPy so ``--help`` stays fast)."""


def add_generate_arguments(parser) -> None:
    parser.add_argument("--output", "-o", help="the module to write (default: standard output)")
    parser.add_argument("--dtype", choices=("float64", "float32"), default="float64",
                        help="floating-point type of the emitted code (default float64)")
    parser.add_argument("--force", action="store_true", help="overwrite a file that chainrule did not generate")
