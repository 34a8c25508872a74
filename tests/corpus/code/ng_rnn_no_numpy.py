# After ernestng11/rnn-from-scratch, rnn_backward.py @ bcb64cd02c4c99a96d91735bee392633294e3e6e, as it is
# there: the file imports nothing, so np is undefined when it runs as a module (the cell's backward is
# ng_rnn.py's, reproduced here with the same missing import).
def rnn_cell_backward(da_next, cache):
    (a_next, a_prev, xt, parameters) = cache
    Wax = parameters["Wax"]
    Waa = parameters["Waa"]
    dz = (1 - a_next ** 2) * da_next
    dxt = np.dot(Wax.T, dz)  # noqa: F821 (np is not defined, as in the source)
    dWax = np.dot(dz, xt.T)  # noqa: F821
    da_prev = np.dot(Waa.T, dz)  # noqa: F821
    dWaa = np.dot(dz, a_prev.T)  # noqa: F821
    dba = np.sum(dz, 1, keepdims=True)  # noqa: F821
    return {"dxt": dxt, "da_prev": da_prev, "dWax": dWax, "dWaa": dWaa, "dba": dba}


def rnn_backward(da, caches):
    (caches, x) = caches
    (a1, a0, x1, parameters) = caches[0]
    n_a, m, T_x = da.shape
    n_x, m = x1.shape
    dx = np.zeros((n_x, m, T_x))  # noqa: F821
    dWax = np.zeros((n_a, n_x))  # noqa: F821
    dWaa = np.zeros((n_a, n_a))  # noqa: F821
    dba = np.zeros((n_a, 1))  # noqa: F821
    da_prevt = np.zeros((n_a, m))  # noqa: F821
    for t in reversed(range(T_x)):
        gradients = rnn_cell_backward(da[:, :, t] + da_prevt, caches[t])
        dxt, da_prevt, dWaxt, dWaat, dbat = gradients["dxt"], gradients["da_prev"], gradients["dWax"], \
            gradients["dWaa"], gradients["dba"]
        dx[:, :, t] = dxt
        dWax += dWaxt
        dWaa += dWaat
        dba += dbat
    da0 = da_prevt
    return {"dx": dx, "da0": da0, "dWax": dWax, "dWaa": dWaa, "dba": dba}
