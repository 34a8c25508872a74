"""Hand-written backward passes for "2 -> 2 relu -> 1 ; mse", in chainrule check-code's convention.

    chainrule check-code "2 -> 2 relu -> 1 ; mse" examples/student_backward.py:backward
    chainrule check-code "2 -> 2 relu -> 1 ; mse" examples/student_backward.py:backward_no_mean
    chainrule check-code "2 -> 2 relu -> 1 ; mse" examples/student_backward.py:backward_no_relu_prime

backward(params, cache, X, T) -> dict: batch-first arrays (one sample per row), params W (out, in)
and b (out,), cache with Z1, A1, ..., Yhat from the forward pass; returns dL/dW and dL/db by name.
"""


def backward(params, cache, X, T):
    N = X.shape[0]
    delta2 = 2 / N * (cache["Yhat"] - T)                      # mse: a mean over the batch
    delta1 = (delta2 @ params["W2"]) * (cache["Z1"] > 0)      # relu'(Z1)
    return {"W2": delta2.T @ cache["A1"], "b2": delta2.sum(axis=0),
            "W1": delta1.T @ X, "b1": delta1.sum(axis=0)}


def backward_no_mean(params, cache, X, T):
    delta2 = 2 * (cache["Yhat"] - T)                          # mistake: no 1/N of the mean
    delta1 = (delta2 @ params["W2"]) * (cache["Z1"] > 0)
    return {"W2": delta2.T @ cache["A1"], "b2": delta2.sum(axis=0),
            "W1": delta1.T @ X, "b1": delta1.sum(axis=0)}


def backward_no_relu_prime(params, cache, X, T):
    N = X.shape[0]
    delta2 = 2 / N * (cache["Yhat"] - T)
    delta1 = delta2 @ params["W2"]                            # mistake: no relu'(Z1)
    right = delta1 * (cache["Z1"] > 0)
    return {"W2": delta2.T @ cache["A1"], "b2": delta2.sum(axis=0),
            "W1": delta1.T @ X, "b1": right}                  # and db1 not summed over the batch
