# ALTERED for this corpus (the mistake): the forward never applies the mask (its `if mask is not None` branch
# left out), so the backward's attention_scores are the unmasked softmax. After CMU 11-785 HW4's
# ScaledDotProductAttention.forward, as in smit25/Transformer-using-numpy,
# mytorch/nn/scaled_dot_product_attention.py @ 554dd0fcc18fa2c2f36cc9a1759fb65d737f5062.
import numpy as np

import cmu_attention


class ScaledDotProductAttention(cmu_attention.ScaledDotProductAttention):
    def forward(self, Q, K, V, mask=None):
        self.Q, self.K, self.V = Q, K, V
        self.d_k = Q.shape[-1]
        scaled_dot_product = Q @ np.swapaxes(K, -2, -1) / np.sqrt(self.d_k)
        self.attention_scores = self.softmax.forward(scaled_dot_product)
        return self.attention_scores @ V
