"""Command-line options of ``chainrule train`` and ``chainrule predict`` (free of SymPy and NumPy,
so ``--help`` stays fast)."""
from .options import add_training_flags

#: Data sets scikit-learn ships (no download): name -> (its loader, how codegen.train.bundled scales the features).
BUNDLED = {"digits": ("load_digits", "pixels 0..16 divided by 16"),
           "iris": ("load_iris", "each feature standardized to mean 0, variance 1"),
           "breast_cancer": ("load_breast_cancer", "each feature standardized to mean 0, variance 1")}


def _data_arguments(parser, spec_help) -> None:
    parser.add_argument("spec", nargs="?", help=spec_help + " (or --module)")
    parser.add_argument("--module", metavar="FILE.py", help="a module chainrule generate wrote, instead of SPEC")
    parser.add_argument("--data", required=True, metavar="FILE|NAME",
                        help="a .npz (arrays X, T, optionally X_val, T_val), a .npy of X (with --targets), a CSV of "
                             f"numbers, or a data set scikit-learn ships: {', '.join(BUNDLED)} "
                             "(pip install chainrule[data])")
    parser.add_argument("--targets", metavar="T.npy", help="the targets of --data X.npy")
    parser.add_argument("--target", action="append", metavar="COLUMN",
                        help="a CSV's target column, by its header name (0, 1, ... without a header); repeat it for "
                             "several outputs (default: the last column; for values, the last OUTPUTS columns)")
    parser.add_argument("--force", action="store_true", help="overwrite files that chainrule did not write")


def add_train_arguments(parser, spec_help) -> None:
    _data_arguments(parser, spec_help)
    parser.add_argument("--val-split", type=float, metavar="F",
                        help="hold out this fraction of the data for validation (stratified by class for "
                             "cross-entropy), like 0.2")
    parser.add_argument("--out", metavar="WEIGHTS.npz", help="write the trained weights here (load them with the "
                        "module's load(), or chainrule predict)")
    parser.add_argument("--history", metavar="FILE.json", help="write the loss, accuracy, learning rate and "
                        "gradient norms of every epoch here")
    parser.add_argument("--plot", metavar="DIR", help="write loss, accuracy, learning-rate and per-layer gradient-norm "
                        "plots (PNG and SVG) into this folder (pip install chainrule[plot])")
    parser.add_argument("--compare", metavar="SPEC2", help="also train this spec on the same data, with the same "
                        "flags, and overlay it in the plots")
    parser.add_argument("--quiet", "-q", action="store_true", help="no progress and no summary")
    parser.add_argument("--dtype", choices=("float64", "float32"), default="float64",
                        help="floating-point type to train in (default float64)")
    add_training_flags(parser, "training (override the spec's [optimizer], [schedule] and [training]; "
                               "with --module only --epochs, --batch-size, --seed and --patience)")

def add_predict_arguments(parser, spec_help) -> None:
    _data_arguments(parser, spec_help)
    parser.add_argument("--weights", required=True, metavar="WEIGHTS.npz", help="weights chainrule train --out wrote")
    parser.add_argument("--output", "-o", metavar="FILE.csv", help="write the predictions here (default: standard output)")
