"""Shape-dependent helpers of the backbones' forward, leaves for torch.fx and timm's tracer (they branch on the
input size). Their own module so that the model files and the TorchScript mirror (``scripting.py``) share them
without importing each other; a module that calls them also lists their names with ``torch.fx.wrap``.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from timm.layers import register_notrace_function, resample_abs_pos_embed


@torch.fx.wrap
def pad_to_multiple(x: torch.Tensor, size: int) -> torch.Tensor:
    """Pad images (B, C, H, W) bottom / right to whole patches (a leaf for torch.fx: branches on the shape)."""
    pad_h, pad_w = (-x.shape[2]) % size, (-x.shape[3]) % size
    if pad_h > 0 or pad_w > 0:
        x = F.pad(x, (0, pad_w, 0, pad_h))
    return x


@torch.fx.wrap
def resample_pos_embed(pos_embed: torch.Tensor, h: int, w: int, gh: int, gw: int) -> torch.Tensor:
    """timm's position embedding (class slot + ``gh x gw``) resized (bicubic) to ``h x w`` (a leaf for torch.fx)."""
    if h == gh and w == gw:
        return pos_embed
    return resample_abs_pos_embed(pos_embed, [h, w], [gh, gw], num_prefix_tokens=1, antialias=False)


register_notrace_function(pad_to_multiple)
register_notrace_function(resample_pos_embed)
