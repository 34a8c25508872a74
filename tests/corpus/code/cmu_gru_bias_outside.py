# After Llynoirx/gru-architecture, mytorch/gru_cell.py @ 00bde4142543d9c2c0e9948949e7314651744fed
# (GRUCell: init_weights, forward, backward), CMU 11-785 HW3P1's GRU cell in torch's equations and gate
# names: one sample as vectors x (d,), h (h,); weights Wrx, Wzx, Wnx (h, d), Wrh, Wzh, Wnh (h, h), two
# biases per gate; n = tanh(Wnx x + bnx + r * (Wnh h + bnh)), h_t = (1 - z) * n + z * h. The gradients
# are accumulated into self.dW.. (+=), as there. Same layout and computation, written for this corpus,
# not a verbatim copy; Sigmoid and Tanh stand for the course's mytorch activation objects.
# ALTERED for the corpus: the backward reads n = tanh(Wnx x + bnx + r * (Wnh h) + bnh): n_state
# without bnh, and dbnh from dn_actftn, not dn_actftn * r.
import numpy as np


class Sigmoid:
    def forward(self, Z):
        self.A = 1 / (1 + np.exp(-Z))
        return self.A


class Tanh:
    def forward(self, Z):
        self.A = np.tanh(Z)
        return self.A


class GRUCell:
    def __init__(self, input_size, hidden_size):
        self.d, self.h = input_size, hidden_size
        h, d = hidden_size, input_size
        self.dWrx, self.dWzx, self.dWnx = np.zeros((h, d)), np.zeros((h, d)), np.zeros((h, d))
        self.dWrh, self.dWzh, self.dWnh = np.zeros((h, h)), np.zeros((h, h)), np.zeros((h, h))
        self.dbrx, self.dbzx, self.dbnx = np.zeros(h), np.zeros(h), np.zeros(h)
        self.dbrh, self.dbzh, self.dbnh = np.zeros(h), np.zeros(h), np.zeros(h)
        self.r_act, self.z_act, self.h_act = Sigmoid(), Sigmoid(), Tanh()

    def init_weights(self, Wrx, Wzx, Wnx, Wrh, Wzh, Wnh, brx, bzx, bnx, brh, bzh, bnh):
        self.Wrx, self.Wzx, self.Wnx, self.Wrh, self.Wzh, self.Wnh = Wrx, Wzx, Wnx, Wrh, Wzh, Wnh
        self.brx, self.bzx, self.bnx, self.brh, self.bzh, self.bnh = brx, bzx, bnx, brh, bzh, bnh

    def forward(self, x, h_prev_t):
        self.x, self.hidden = x, h_prev_t
        self.n_state = self.Wnh @ h_prev_t
        self.r = self.r_act.forward(self.Wrx @ x + self.brx + self.Wrh @ h_prev_t + self.brh)
        self.z = self.z_act.forward(self.Wzx @ x + self.bzx + self.Wzh @ h_prev_t + self.bzh)
        self.n = self.h_act.forward(self.Wnx @ x + self.bnx + self.r * (self.Wnh @ h_prev_t + self.bnh))
        h_t = (1 - self.z) * self.n + self.z * h_prev_t
        return h_t

    def backward(self, delta):
        # rows (1, n) for the products below; the dW.. are accumulated over calls
        x, hidden = self.x.reshape(1, -1), self.hidden.reshape(1, -1)
        r, z, n = self.r.reshape(1, -1), self.z.reshape(1, -1), self.n.reshape(1, -1)

        dz = delta * (hidden - n)
        dn = delta * (1 - z)
        dh_prev_t = delta * z

        dn_actftn = dn * (1 - n ** 2)
        dn_actftn_r = dn_actftn * r
        self.dWnx += dn_actftn.T @ x
        dx = dn_actftn @ self.Wnx
        self.dbnx += dn_actftn.sum(axis=0)
        dr = dn_actftn * self.n_state.T
        self.dWnh += dn_actftn_r.T @ hidden
        dh_prev_t = dh_prev_t + dn_actftn_r @ self.Wnh
        self.dbnh += dn_actftn.sum(axis=0)

        dz_actftn = dz * z * (1 - z)
        dx = dx + dz_actftn @ self.Wzx
        self.dWzx += dz_actftn.T @ x
        self.dWzh += dz_actftn.T @ hidden
        dh_prev_t = dh_prev_t + dz_actftn @ self.Wzh
        self.dbzx += dz_actftn.sum(axis=0)
        self.dbzh += dz_actftn.sum(axis=0)

        dr_actftn = dr * r * (1 - r)
        dx = dx + dr_actftn @ self.Wrx
        self.dWrx += dr_actftn.T @ x
        self.dWrh += dr_actftn.T @ hidden
        dh_prev_t = dh_prev_t + dr_actftn @ self.Wrh
        self.dbrx += dr_actftn.sum(axis=0)
        self.dbrh += dr_actftn.sum(axis=0)
        return dx.reshape(-1), dh_prev_t.reshape(-1)
