"""How the batch-first printer prints the convolution and pooling nodes of ``derive.ops.conv`` and
``derive.ops.pool``: each as a call of a helper the emitted module defines (``WINDOW_HELPERS``,
in the template), whose arguments are the node's arrays as code holds them (a batch value (N,
features), a kernel (O, C, kH, kW)) and its window's sizes.

The helpers view an (N, C·H·W) array as (N, C, H, W) with a free reshape. A convolution copies its
input once into each sample's (C·kH·kW, H'·W') im2col matrix, one strided slice per kernel offset (the
padding never built), makes one GEMM per sample in each direction, and returns the columns with its
output: the kernel's gradient reads them (``<key>_saved``) rather than copying them again. The input's
gradient is col2im, the columns added back to their positions by one strided slice per kernel offset;
pooling takes its windows with ``numpy.lib.stride_tricks.sliding_window_view`` (no copy) and one pass
per kernel offset, and max pooling routes each gradient to the first entry of its window equal to the
pooled maximum.
"""
from derive.ops.conv import Window

#: The helpers, in the order the template defines them, and the ones each needs.
WINDOW_HELPERS = ("_windows", "_spans", "_im2col", "_col2im", "_conv", "_conv_weight_grad", "_conv_input_grad",
                  "_maxpool", "_maxpool_grad", "_avgpool", "_avgpool_grad")
_NEEDS = {"_conv": ("_spans", "_im2col"), "_conv_input_grad": ("_spans", "_col2im"), "_maxpool": ("_windows",),
          "_maxpool_grad": ("_windows", "_spans", "_col2im"), "_avgpool": ("_windows",),
          "_avgpool_grad": ("_spans", "_col2im")}


def _global(w: Window) -> bool:
    return w.kernel == w.spatial and not any(w.padding)


class WindowPrinting:
    """``_print_<Node>`` for the window nodes; mixed into ``BatchFirstPrinter``, whose ``stored_transposed``
    says how code holds a value."""

    def _held(self, mat, row=False) -> str:
        """``mat`` printed as code holds it (a batch value batch-first, a parameter as stored; ``row``: a
        bias as its 1-D vector)."""
        saved, self._transposed = self._transposed, row or self.stored_transposed(mat)
        try:
            return self._factor(mat)
        finally:
            self._transposed = saved

    def _call(self, helper: str, args, w: Window, *keys) -> str:
        self.helpers.update((helper,) + _NEEDS.get(helper, ()))
        sizes = {"shape": w.shape, "kernel": w.kernel, "stride": w.stride, "padding": w.padding,
                 "dilation": w.dilation}
        settings = [f"{key}={sizes[key]}" for key in keys]
        return f"{helper}({', '.join(list(args) + settings)})"

    def _print_Conv(self, expr):
        w = expr.window
        args = [self._held(m) for m in (expr.mats[1], expr.mats[0])] + \
            ([self._held(expr.mats[2], row=True)] if len(expr.mats) == 3 else ["None"])
        return self._call("_conv", args, w, "shape", "stride", "padding", "dilation")

    def _print_ConvWeightGrad(self, expr):
        # the im2col columns the forward's _conv returned with its output (see Conv.saves)
        args = [self._held(expr.mats[0]), f"{self._name(expr.saved)}_saved"]
        return self._call("_conv_weight_grad", args, expr.window, "shape", "kernel")

    def _print_ChannelSum(self, expr):
        # Σ over the batch is one matrix-vector product (ones_N, see BatchFirstPrinter), then each channel's positions
        channels = expr.shape[0]
        return f"(ones_N @ {self._held(expr.mats[0])}).reshape({channels}, -1).sum(axis=1)"

    def _print_ConvInputGrad(self, expr):
        return self._call("_conv_input_grad", [self._held(m) for m in expr.mats], expr.window,
                          "shape", "stride", "padding", "dilation")

    def _print_MaxPool(self, expr):
        return self._call("_maxpool", [self._held(expr.mats[0])], expr.window, "shape", "kernel", "stride", "padding")

    def _print_MaxPoolGrad(self, expr):
        return self._call("_maxpool_grad", [self._held(m) for m in expr.mats], expr.window,
                          "shape", "kernel", "stride", "padding")

    def _print_AvgPool(self, expr):
        w = expr.window
        if _global(w):  # the mean of each channel's positions
            return f"{self._held(expr.mats[0])}.reshape(N, {w.channels}, -1).mean(axis=2)"
        return self._call("_avgpool", [self._held(expr.mats[0])], w, "shape", "kernel", "stride", "padding")

    def _print_AvgPoolGrad(self, expr):
        w = expr.window
        if _global(w):  # each channel's gradient spread evenly over its positions
            return f"np.repeat({self._held(expr.mats[0])} / {w.size}, {w.size}, axis=1)"
        return self._call("_avgpool_grad", [self._held(expr.mats[0])], w, "shape", "kernel", "stride", "padding")
