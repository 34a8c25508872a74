# ALTERED for this corpus (the mistake): the backward's division of the scores' gradient by sqrt(d_k) left
# out. After CMU 11-785 HW4's ScaledDotProductAttention.backward, as in smit25/Transformer-using-numpy,
# mytorch/nn/scaled_dot_product_attention.py @ 554dd0fcc18fa2c2f36cc9a1759fb65d737f5062; the forward and
# the Softmax are cmu_attention.py's.
import numpy as np

import cmu_attention


class ScaledDotProductAttention(cmu_attention.ScaledDotProductAttention):
    def backward(self, d_output):
        d_V = np.swapaxes(self.attention_scores, -2, -1) @ d_output
        d_attention_scores = d_output @ np.swapaxes(self.V, -2, -1)
        d_scaled_dot_product = self.softmax.backward(d_attention_scores)
        d_Q = d_scaled_dot_product @ self.K
        d_K = np.swapaxes(d_scaled_dot_product, -2, -1) @ self.Q
        return d_Q, d_K, d_V
