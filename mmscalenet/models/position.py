"""One depth position of a grown stack, and the containers of the shared weights it runs (pure torch + timm layers).

A :class:`SharedBlock` holds the weights of one pretrained layer once (timm's names); a :class:`Position` runs the
block it is given at call time with its own adapters, LoRA deltas, gates, norms and attention pattern, so the shared
tensors appear once in the module tree. The ViT (``models/vit.py``) and, through ``SwinPosition``, the Swin
(``models/swin.py``) are stacks of positions.
"""
from __future__ import annotations

from typing import Any, Dict, Optional, Tuple

import torch
import torch.nn.functional as F
from timm.layers import drop_path as stochastic_depth
from timm.models.vision_transformer_sam import get_decomposed_rel_pos_bias, window_partition, window_unpartition
from torch import nn

from .adapters import build_adapters


class _Attn(nn.Module):
    """Container for the shared attention weights (timm names ``qkv``, ``proj``)."""

    def __init__(self, dim: int):
        super().__init__()
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)


class _Mlp(nn.Module):
    """Container for the shared MLP weights (timm names ``fc1``, ``fc2``)."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)


class SharedBlock(nn.Module):
    """The weights of one pretrained layer, stored once and run by every position that maps to it."""

    def __init__(self, dim: int, mlp_ratio: float, shared_norms: bool):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6) if shared_norms else None
        self.attn = _Attn(dim)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6) if shared_norms else None
        self.mlp = _Mlp(dim, int(dim * mlp_ratio))


def decomposed_rel_pos_bias(q: torch.Tensor, grid: Tuple[int, int], rel_h: torch.Tensor,
                            rel_w: torch.Tensor) -> torch.Tensor:
    """MViTv2 / ViTDet decomposed relative-position bias (timm's) for queries ``q`` (B, heads, H*W, hd).

    Returns an additive attention bias (B, heads, H*W, H*W); the tables are resized when ``grid`` differs from the
    size they were made for.
    """
    B, nh, N, hd = q.shape
    bias = get_decomposed_rel_pos_bias(q.reshape(B * nh, N, hd), rel_h.to(q.dtype), rel_w.to(q.dtype), grid, grid)
    return bias.view(B, nh, N, N)


class Position(nn.Module):
    """One depth position: runs a :class:`SharedBlock` with its own adapters, gates, norms and attention pattern.

    The block is passed at call time (not registered here), so the shared tensors appear once in the module tree.
    """

    def __init__(self, index: int, source: int, dim: int, num_heads: int, mlp_ratio: float,
                 adapter: Optional[Dict[str, Any]], own_norms: bool, gated: bool, drop_path: float,
                 window_size: int, rel_pos_size: int, norm_eps: float = 1e-6, dense: bool = False):
        super().__init__()
        self.index, self.source = index, source
        self.num_heads, self.head_dim = num_heads, dim // num_heads
        self.drop_path = drop_path
        self.window_size = window_size
        self.dense = dense   # tokens are a (B, H, W, C) map ('featmap' mode), not a (B, N, C) sequence
        hidden = int(dim * mlp_ratio)
        if own_norms:  # norm_eps: 1e-6 for timm's ViT, 1e-5 for its Swin (the Swin position subclasses this)
            self.norm1 = nn.LayerNorm(dim, eps=norm_eps)
            self.norm2 = nn.LayerNorm(dim, eps=norm_eps)
        else:
            self.norm1 = self.norm2 = None
        # one interface for every kind (a no-op where there is none); LoRA deltas keep their keys lora.{target}
        self.adapter_attn, self.adapter_mlp, self.lora = build_adapters(adapter, dim, hidden)
        # True: the adapters' fused kernels; set_fused(False): their reference path, the readable definition. A
        # plain bool (not a class object) so that torch.fx / TorchScript see a constant
        self.fused = True
        if gated:  # function-preserving growth: an inserted position starts as the identity
            # shape (1,), not a 0-dim scalar: FSDP2 cannot shard 0-dim parameters
            self.gate_attn = nn.Parameter(torch.zeros(1))
            self.gate_mlp = nn.Parameter(torch.zeros(1))
        else:
            self.gate_attn = self.gate_mlp = None
        if rel_pos_size > 0:
            size = window_size if window_size > 0 else rel_pos_size
            self.rel_pos_h = nn.Parameter(torch.zeros(2 * size - 1, self.head_dim))
            self.rel_pos_w = nn.Parameter(torch.zeros(2 * size - 1, self.head_dim))
        else:
            self.rel_pos_h = self.rel_pos_w = None

    def extra_repr(self) -> str:
        attn = f'window={self.window_size}' if self.window_size else 'global'
        return f'index={self.index}, source={self.source}, {attn}, drop_path={self.drop_path:.3f}'

    # ---- adapters ------------------------------------------------------------------------------------------
    def set_fused(self, fused: bool) -> None:
        """Fused kernels (fast, default) or the plain reference implementation of the adapters."""
        self.fused = bool(fused)

    def _project_in(self, adapter: nn.Module, h: torch.Tensor, first: nn.Linear) -> Tuple[torch.Tensor, Any]:
        return adapter.fused_in(h, first) if self.fused else adapter.reference_in(h, first)

    def _project_out(self, adapter: nn.Module, h: torch.Tensor, second: nn.Linear, carry: Any) -> torch.Tensor:
        return adapter.fused_out(h, second, carry) if self.fused else adapter.reference_out(h, second, carry)

    @torch.no_grad()
    def export_state(self, block: SharedBlock) -> Dict[str, torch.Tensor]:
        """This position as the state dict of a plain timm ``Block``: its norms, the shared weights with its
        adapters merged (``ValueError`` when they cannot be) and its residual gates folded into ``attn.proj`` /
        ``mlp.fc2``. Untied export writes it as block ``index``."""
        out: Dict[str, torch.Tensor] = {}
        for name, own, shared in (('norm1', self.norm1, block.norm1), ('norm2', self.norm2, block.norm2)):
            norm = own if own is not None else shared
            out[f'{name}.weight'], out[f'{name}.bias'] = norm.weight.clone(), norm.bias.clone()
        for site, adapter, gate, first, second in (
                (('attn.qkv', 'attn.proj'), self.adapter_attn, self.gate_attn, block.attn.qkv, block.attn.proj),
                (('mlp.fc1', 'mlp.fc2'), self.adapter_mlp, self.gate_mlp, block.mlp.fc1, block.mlp.fc2)):
            weights = adapter.merged_weights(first.weight.float(), second.weight.float())
            for name, linear, weight in zip(site, (first, second), weights):
                bias = linear.bias.float()
                if linear is second and gate is not None:
                    weight, bias = weight * gate.float(), bias * gate.float()
                out[f'{name}.weight'] = weight.to(linear.weight.dtype).contiguous()
                out[f'{name}.bias'] = bias.to(linear.bias.dtype).contiguous()
        return out

    # ---- helpers --------------------------------------------------------------------------------------------
    def _residual(self, x: torch.Tensor, branch: torch.Tensor, gate: Optional[torch.Tensor]) -> torch.Tensor:
        if gate is not None:
            branch = branch * gate
        return x + stochastic_depth(branch, self.drop_path, self.training)

    # ---- sub-layers -----------------------------------------------------------------------------------------
    def _attention(self, h: torch.Tensor, block: SharedBlock, grid: Optional[Tuple[int, int]]) -> torch.Tensor:
        """Multi-head self-attention over the tokens of ``h`` (B, N, C); ``grid`` = (H, W) for rel-pos."""
        B, N, C = h.shape
        qkv, carry = self._project_in(self.adapter_attn, h, block.attn.qkv)
        q, k, v = qkv.reshape(B, N, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
        bias = None
        if self.rel_pos_h is not None and grid is not None:
            bias = decomposed_rel_pos_bias(q, grid, self.rel_pos_h, self.rel_pos_w)
        o = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
        o = o.transpose(1, 2).reshape(B, N, C)
        return self._project_out(self.adapter_attn, o, block.attn.proj, carry)

    def _mlp(self, h: torch.Tensor, block: SharedBlock) -> torch.Tensor:
        z, carry = self._project_in(self.adapter_mlp, h, block.mlp.fc1)
        # rebind, don't nest: holding fc1's output through fc2 (as F.gelu(z) in the call would) keeps two
        # hidden-size buffers alive at once, and on CPU glibc then hands the pair back to the OS after every
        # block, so the next block page-faults them in again (measured: gelu 3x slower in inference)
        z = F.gelu(z)
        return self._project_out(self.adapter_mlp, z, block.mlp.fc2, carry)

    def forward(self, x: torch.Tensor, block: SharedBlock) -> torch.Tensor:
        """``x``: (B, N, C) tokens (class-token mode) or (B, H, W, C) feature map (dense mode)."""
        norm1 = self.norm1 if self.norm1 is not None else block.norm1
        norm2 = self.norm2 if self.norm2 is not None else block.norm2
        h = norm1(x)
        if self.dense:
            B, H, W, C = x.shape
            if self.window_size > 0:
                ws = self.window_size
                windows, padded = window_partition(h, ws)
                a = self._attention(windows.reshape(-1, ws * ws, C), block, (ws, ws))
                a = window_unpartition(a.view(-1, ws, ws, C), ws, (H, W), padded)
            else:
                a = self._attention(h.reshape(B, H * W, C), block, (H, W)).view(B, H, W, C)
        else:
            a = self._attention(h, block, None)
        x = self._residual(x, a, self.gate_attn)
        x = self._residual(x, self._mlp(norm2(x), block), self.gate_mlp)
        return x
