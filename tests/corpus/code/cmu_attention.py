# After CMU 11-785 HW4's mytorch (Introduction to Deep Learning, 2025), as in smit25/Transformer-using-numpy,
# mytorch/nn/scaled_dot_product_attention.py and mytorch/nn/activation.py
# @ 554dd0fcc18fa2c2f36cc9a1759fb65d737f5062: ScaledDotProductAttention (forward stores Q, K, V and the
# softmax's output; backward(d_output) returns d_Q, d_K, d_V) and Softmax (the Jacobian built row by row).
import numpy as np


class Softmax:
    def __init__(self, dim=-1):
        self.dim = dim

    def forward(self, Z):
        self.Z = Z
        shifted = Z - np.max(Z, axis=self.dim, keepdims=True)
        e = np.exp(shifted)
        self.A = e / np.sum(e, axis=self.dim, keepdims=True)
        return self.A

    def backward(self, dLdA):
        shape = self.A.shape
        C = shape[self.dim]
        A = np.swapaxes(self.A, self.dim, -1).reshape(-1, C)
        dLdA = np.swapaxes(dLdA, self.dim, -1).reshape(-1, C)
        dLdZ = np.zeros_like(dLdA)
        for i in range(dLdA.shape[0]):
            J = np.zeros((C, C))
            for m in range(C):
                for n in range(C):
                    J[m, n] = A[i, m] * (1 - A[i, m]) if m == n else -A[i, m] * A[i, n]
            dLdZ[i, :] = dLdA[i, :] @ J
        return dLdZ.reshape(self.Z.shape)


class ScaledDotProductAttention:
    def __init__(self):
        self.eps = 1e10
        self.softmax = Softmax(dim=-1)

    def forward(self, Q, K, V, mask=None):
        self.Q, self.K, self.V = Q, K, V
        self.d_k = Q.shape[-1]
        scaled_dot_product = Q @ np.swapaxes(K, -2, -1) / np.sqrt(self.d_k)
        if mask is not None:
            scaled_dot_product = scaled_dot_product + mask * (-self.eps)
        self.attention_scores = self.softmax.forward(scaled_dot_product)
        return self.attention_scores @ V

    def backward(self, d_output):
        d_V = np.swapaxes(self.attention_scores, -2, -1) @ d_output
        d_attention_scores = d_output @ np.swapaxes(self.V, -2, -1)
        d_scaled_dot_product = self.softmax.backward(d_attention_scores)
        d_scaled_dot_product = d_scaled_dot_product / np.sqrt(self.d_k)
        d_Q = d_scaled_dot_product @ self.K
        d_K = np.swapaxes(d_scaled_dot_product, -2, -1) @ self.Q
        return d_Q, d_K, d_V
