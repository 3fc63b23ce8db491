"""One position of a grown Swin stage, the shared block it runs, and patch merging (pure torch).

:class:`SwinPosition` is a :class:`~mmscalenet.models.position.Position` with (shifted) window attention: odd
positions run SW-MSA; its relative-position bias table is its own by default (``unshared`` contains 'rel_pos').
Names follow timm's ``SwinTransformer`` (``models/swin.py`` says why and how the stages use them).
"""
from __future__ import annotations

from typing import Any, Dict, Optional

import torch
import torch.nn.functional as F
from torch import nn

from .position import Position, _Attn, _Mlp
from .swin_windows import WindowGeometry

_NORM_EPS = 1e-5  # timm's / Microsoft's Swin use nn.LayerNorm's default


class SwinSharedBlock(nn.Module):
    """The weights of one pretrained Swin block, stored once per stage and run by every position mapped to it."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, shared_norms: bool, table_rows: int):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=_NORM_EPS) if shared_norms else None
        self.attn = _Attn(dim)
        if table_rows:
            self.attn.relative_position_bias_table = nn.Parameter(torch.zeros(table_rows, num_heads))
        self.norm2 = nn.LayerNorm(dim, eps=_NORM_EPS) if shared_norms else None
        self.mlp = _Mlp(dim, int(dim * mlp_ratio))


class SwinPosition(Position):
    """One position of a Swin stage: (shifted) window attention + MLP of a shared block, with its own adapters,
    LoRA, gates, norms and (by default) relative-position bias table. Odd positions run SW-MSA."""

    def __init__(self, index: int, source: int, dim: int, num_heads: int, mlp_ratio: float,
                 adapter: Optional[Dict[str, Any]], own_norms: bool, gated: bool, drop_path: float,
                 shifted: bool, table_rows: int):
        super().__init__(index, source, dim, num_heads, mlp_ratio, adapter, own_norms, gated, drop_path,
                         window_size=0, rel_pos_size=0, norm_eps=_NORM_EPS)
        self.shifted = shifted
        self.relative_position_bias_table = (nn.Parameter(torch.zeros(table_rows, num_heads)) if table_rows
                                             else None)

    @torch.no_grad()
    def export_state(self, block: SwinSharedBlock) -> Dict[str, torch.Tensor]:
        """As :meth:`Position.export_state`, plus this position's bias table (its own, or its block's)."""
        out = super().export_state(block)
        table = self.relative_position_bias_table
        table = table if table is not None else block.attn.relative_position_bias_table
        out['attn.relative_position_bias_table'] = table.clone()
        return out

    def extra_repr(self) -> str:
        return (f'index={self.index}, source={self.source}, {"SW-MSA" if self.shifted else "W-MSA"}, '
                f'drop_path={self.drop_path:.3f}')

    def _window_attention(self, h: torch.Tensor, block: SwinSharedBlock, geo: WindowGeometry) -> torch.Tensor:
        B, H, W, C = h.shape
        (wh, ww), (sh, sw) = geo.window, geo.shift
        if sh or sw:
            h = torch.roll(h, shifts=(-sh, -sw), dims=(1, 2))
        pad_h, pad_w = (-H) % wh, (-W) % ww
        if pad_h or pad_w:
            h = F.pad(h, (0, 0, 0, pad_w, 0, pad_h))
        Hp, Wp = H + pad_h, W + pad_w
        win = h.view(B, Hp // wh, wh, Wp // ww, ww, C).permute(0, 1, 3, 2, 4, 5).reshape(-1, wh * ww, C)
        Bw, N, _ = win.shape
        qkv, carry = self._project_in(self.adapter_attn, win, block.attn.qkv)
        q, k, v = qkv.reshape(Bw, N, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
        table = self.relative_position_bias_table
        if table is None:
            table = block.attn.relative_position_bias_table
        bias = table[geo.index.view(-1)].view(N, N, -1).permute(2, 0, 1).unsqueeze(0).to(q.dtype)
        if geo.mask is not None:
            nW = geo.mask.shape[0]
            bias = (bias.unsqueeze(1) + geo.mask.to(q.dtype).view(1, nW, 1, N, N)).expand(
                Bw // nW, -1, -1, -1, -1).reshape(Bw, self.num_heads, N, N)
        o = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
        o = self._project_out(self.adapter_attn, o.transpose(1, 2).reshape(Bw, N, C), block.attn.proj, carry)
        o = o.view(B, Hp // wh, Wp // ww, wh, ww, C).permute(0, 1, 3, 2, 4, 5).reshape(B, Hp, Wp, C)
        if pad_h or pad_w:
            o = o[:, :H, :W, :]
        if sh or sw:
            o = torch.roll(o, shifts=(sh, sw), dims=(1, 2))
        return o

    def forward(self, x: torch.Tensor, block: SwinSharedBlock,  # type: ignore[override]
                geo: WindowGeometry) -> torch.Tensor:
        """``x``: (B, H, W, C) feature map of the stage."""
        norm1 = self.norm1 if self.norm1 is not None else block.norm1
        norm2 = self.norm2 if self.norm2 is not None else block.norm2
        x = self._residual(x, self._window_attention(norm1(x), block, geo), self.gate_attn)
        return self._residual(x, self._mlp(norm2(x), block), self.gate_mlp)


class PatchMerging(nn.Module):
    """2x2 patch merging with timm's / Microsoft's channel order (x[0::2, 0::2], x[1::2, 0::2], x[0::2, 1::2],
    x[1::2, 1::2]), then LayerNorm and a bias-free linear 4C -> 2C."""

    def __init__(self, dim: int, out_dim: int):
        super().__init__()
        self.norm = nn.LayerNorm(4 * dim, eps=_NORM_EPS)
        self.reduction = nn.Linear(4 * dim, out_dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, H, W, C = x.shape
        if H % 2 == 1 or W % 2 == 1:   # (a bool condition: this module also runs scripted)
            x = F.pad(x, (0, 0, 0, W % 2, 0, H % 2))
            H, W = H + H % 2, W + W % 2
        x = x.reshape(B, H // 2, 2, W // 2, 2, C).permute(0, 1, 3, 4, 2, 5).flatten(3)
        return self.reduction(self.norm(x))
