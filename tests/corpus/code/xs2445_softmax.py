# After xs2445/CNN-PyCUDA-EECS4750-Project, utils/Lossfunctions.py @ 72eb8fbeda8fe97427096f935155f5cb3ac2b42d
# (a student project's cs231n-style softmax loss). Same computation; written for this corpus, not a
# verbatim copy. Its own mistake, kept: the loss sums x[:, y] (whole columns, one per label) where
# x[range(N), y] (one score per sample) belongs, so the loss is wrong; dx is right.
import numpy as np


def softmax_loss(x, y):
    num_train = x.shape[0]
    x = x - np.max(x, axis=1, keepdims=True)
    x_exp = np.exp(x)
    loss = -np.sum(x[:, y])
    loss += np.sum(np.log(np.sum(x_exp, axis=1)))
    loss /= num_train
    neg = np.zeros_like(x)
    neg[range(num_train), y] = -1
    pos = (x_exp.T / np.sum(x_exp, axis=1)).T
    dx = (neg + pos) / num_train
    return loss, dx
