"""s4d: an attention-free baseline, a diagonal state-space layer run over v; q and k are ignored.

Gu, Gupta, Goel and Ré, "On the Parameterization and Initialization of Diagonal State Space
Models", NeurIPS 2022 (arXiv:2206.11893), S4D-Lin initialisation.

It answers "do I need attention at all?": each of the H·D channels of v is mixed along the
sequence by its own linear time-invariant state-space model, with no query-key interaction.
Per channel, N/2 complex modes ``A_n = −1/2 + iπn`` (S4D-Lin), ``B = 1``, a learned complex
``C`` and step ``Δ`` (log-uniform in [0.001, 0.1] at init); zero-order hold gives the kernel

    K_l = 2·Re Σ_n C_n (e^(ΔA_n) − 1)/A_n · e^(ΔA_n·l),     l = 0 … L−1

and ``y = K ∗ u + D·u`` with a learned skip D. Causal (``is_causal``): the convolution looks
only back. Not causal: a second C gives a kernel over the future, as the S4 code's
bidirectional mode does, ``y_l = Σ_{m≤l} K⁰_{l−m} u_m + Σ_{m>l} K¹_{m−l−1} u_m``.
The convolution runs by FFT of length 2L: O(L log L) time, O(L·N) for the kernel.
Padding: padded positions of v are zeroed, so they feed nothing. No weights, no cross
(query and key lengths must match). Not exact, no tolerance: it is not attention.
Options: ``state_size`` (N = 64).
"""

from __future__ import annotations

import math

import torch
from torch import nn

import attnbench
from attnbench.nn.kv_cache import RecurrentState
from attnbench.nn.masks import key_padding


class S4D(nn.Module):
    """Diagonal SSM over v, one per channel (H·D channels). Option: ``state_size`` (64)."""

    def __init__(self, config: attnbench.AttentionConfig) -> None:
        super().__init__()
        state = int(config.option("state_size", 64))
        if state < 2 or state % 2:
            raise ValueError(f"s4d: state_size must be an even number >= 2, got {state}; try 64")
        channels = config.num_heads * config.head_dim
        self.channels = channels
        modes = state // 2
        self.log_dt = nn.Parameter(torch.rand(channels) * (math.log(0.1) - math.log(0.001)) + math.log(0.001))
        self.log_a_real = nn.Parameter(torch.full((channels, modes), math.log(0.5)))
        self.a_imag = nn.Parameter(math.pi * torch.arange(modes, dtype=torch.float32).repeat(channels, 1))
        # C for the look-back kernel and for the look-ahead one; variance 1/2 per real part.
        self.c = nn.Parameter(torch.randn(2, channels, modes, 2) * 0.5**0.5)
        self.d = nn.Parameter(torch.randn(channels))

    def kernels(self, length: int) -> torch.Tensor:
        """The two ZOH kernels (2, channels, length): looking back and looking ahead."""
        dt = self.log_dt.exp()[:, None]
        a = torch.complex(-self.log_a_real.exp(), self.a_imag)  # (channels, modes)
        dta = dt * a
        c = torch.view_as_complex(self.c) * (dta.exp() - 1) / a  # (2, channels, modes)
        # Re(c·e^((x+iy)l)) = e^(xl)·(Re c·cos(yl) − Im c·sin(yl)): real exp, cos and sin of
        # (channels, modes, L) are an order of magnitude cheaper on CPU than one complex exp.
        steps = torch.arange(length, device=a.device, dtype=dta.real.dtype)
        decay = torch.exp(dta.real[..., None] * steps)
        phase = dta.imag[..., None] * steps
        return 2 * (torch.einsum("scn,cnl->scl", c.real, decay * torch.cos(phase))
                    - torch.einsum("scn,cnl->scl", c.imag, decay * torch.sin(phase)))

    def forward(
        self,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        attn_mask: torch.Tensor | None = None,
        is_causal: bool = False,
        need_weights: bool = False,
    ) -> torch.Tensor:
        if need_weights:
            raise NotImplementedError("s4d has no attention weights (its spec says weights=False)")
        b, h, length, d = v.shape
        if q.shape[-2] != length:
            raise ValueError(
                f"s4d maps v to the output position by position (cross=False): query length "
                f"{q.shape[-2]} != key/value length {length}"
            )
        if h * d != self.channels:
            raise ValueError(f"s4d was built for {self.channels} channels (heads × head_dim), got {h} × {d}")
        keep = key_padding(attn_mask)
        if keep is not None:
            v = v.masked_fill(~keep[:, None, :, None], 0)
        u = v.transpose(-2, -1).reshape(b, h * d, length).float()  # (B, channels, L)
        back, ahead = self.kernels(length)
        kernel = torch.nn.functional.pad(back, (0, length))  # lags 0 … L−1, then zeros
        if not is_causal:  # negative lags −1 … −L+1 sit at the end of the circular kernel
            kernel = kernel + torch.nn.functional.pad(ahead.flip(-1), (length, 0))
        n = 2 * length
        y = torch.fft.irfft(torch.fft.rfft(u, n=n) * torch.fft.rfft(kernel, n=n), n=n)[..., :length]
        y = y + self.d[:, None] * u
        return y.to(v.dtype).reshape(b, h, d, length).transpose(-2, -1)

    def init_state(self, batch_size, *, device=None, dtype=torch.float32):
        """The SSM's hidden state x (B, channels, N/2) per complex mode, zero; complex64 whatever ``dtype``."""
        modes = self.a_imag.shape[1]
        return RecurrentState(tensors={
            "x": torch.zeros(batch_size, self.channels, modes, device=device, dtype=torch.complex64),
        })

    def state_nbytes(self, state):
        """Bytes of the hidden state: constant in the context."""
        return state["x"].numel() * state["x"].element_size()

    #: Positions per piece of a long chunk: a piece's (channels, modes, piece) powers stay small.
    STEP_PIECE = 128

    def step(self, q, k, v, state):
        """The look-back SSM as a recurrence: ``x_l = e^(ΔA) x_(l−1) + u_l``, ``y_l = 2·Re(C̄·x_l) + D·u_l``
        with ``C̄ = C (e^(ΔA) − 1)/A``, which unrolls to the forward's causal kernel K. A chunk goes in
        pieces: the earlier state decayed into each position, plus the piece's own kernel K as a
        (piece × piece) Toeplitz product."""
        b, h, t, d = v.shape
        u = v.transpose(-2, -1).reshape(b, h * d, t).float()  # (B, channels, T)
        dta = self.log_dt.exp()[:, None] * torch.complex(-self.log_a_real.exp(), self.a_imag)  # (channels, modes)
        a = torch.complex(-self.log_a_real.exp(), self.a_imag)
        c_bar = torch.view_as_complex(self.c[0].contiguous()) * (dta.exp() - 1) / a
        x = state["x"]
        if t == 1:  # one token: the recurrence itself, no kernel or Toeplitz product
            x = dta.exp() * x + u[..., 0, None].to(x.dtype)
            y = 2 * torch.einsum("cn,bcn->bc", c_bar, x).real + self.d * u[..., 0]
            out = y.to(v.dtype).reshape(b, h, d, 1).transpose(-2, -1)
            return out, RecurrentState(tensors={"x": x}, position=state.position + 1)
        ys = []
        for start in range(0, t, self.STEP_PIECE):
            piece = u[..., start : start + self.STEP_PIECE]
            n = piece.shape[-1]
            steps = torch.arange(n + 1, device=u.device, dtype=torch.float32)
            powers = torch.exp(dta[..., None] * steps.to(dta.dtype))  # (channels, modes, n+1): e^(ΔA·l)
            # Earlier state decayed to each position: 2·Re Σ_n C̄ e^(ΔA(t+1)) x.
            from_state = 2 * torch.einsum("cn,bcn,cnt->bct", c_bar, x, powers[..., 1:]).real
            kernel = self.kernels(n)[0]  # (channels, n): K_l for l = 0 … n−1
            lag = torch.arange(n, device=u.device)
            lags = lag[:, None] - lag[None, :]  # t − m
            toeplitz = torch.where(lags >= 0, kernel[:, lags.clamp(min=0)], kernel.new_zeros(()))  # (channels, t, m)
            y = from_state + torch.einsum("ctm,bcm->bct", toeplitz, piece) + self.d[:, None] * piece
            ys.append(y)
            # x after the piece: e^(ΔA n) x + Σ_m e^(ΔA(n−1−m)) u_m.
            x = powers[..., n] * x + torch.einsum("cnm,bcm->bcn", powers[..., :n].flip(-1), piece.to(powers.dtype))
        y = torch.cat(ys, dim=-1)
        out = y.to(v.dtype).reshape(b, h, d, t).transpose(-2, -1)
        return out, RecurrentState(tensors={"x": x}, position=state.position + t)


@attnbench.hookimpl
def register_attention(register):
    register(attnbench.AttentionSpec(
        name="s4d",
        build=S4D,
        summary="Attention-free baseline: S4D-Lin diagonal state-space convolution over v (q, k ignored)",
        complexity="O(L·log L)",
        exact=False,
        causal=True,
        padding_mask=True,
        cross=False,
        weights=False,
        tolerance=None,  # not attention: no agreement with softmax is claimed
        attention_free=True,
        citation="Gu et al. 2022, On the Parameterization and Initialization of Diagonal SSMs (S4D, NeurIPS)",
        options={"state_size": 64},
        incremental=True,
    ))
