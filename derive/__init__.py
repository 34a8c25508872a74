"""chainrule's derivation engine: specs in, chain-rule Steps out, printed as LaTeX, Markdown or text."""
from .chain import Derivation, Step, derive
from .errors import ChainruleError
from .spec import Layer, Network, build, from_dict, load, parse_inline

__all__ = ["ChainruleError", "Derivation", "Layer", "Network", "Step", "build", "derive", "from_dict", "load",
           "parse_inline"]
