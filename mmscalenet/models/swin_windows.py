"""Swin window geometry at one input size (pure torch): effective window, shift, relative-position index into the
bias table and the SW-MSA mask, with timm's rule for maps smaller than the window.

Written for TorchScript too (explicit tuples, bool conditions): the scripted Swin (``models/scripting.py``) computes
the geometry in its graph with these functions.
"""
from typing import List, NamedTuple, Optional, Tuple

import torch


class WindowGeometry(NamedTuple):
    """Windows of one stage at one input size: effective window, shift, bias index and SW-MSA mask."""
    window: Tuple[int, int]
    shift: Tuple[int, int]
    index: torch.Tensor            # (N, N) rows into the relative-position table
    mask: Optional[torch.Tensor]   # (nW, N, N) 0 / -100, None without shift


def relative_position_index(window: Tuple[int, int], table_window: Tuple[int, int],
                            device: Optional[torch.device] = None) -> torch.Tensor:
    """Rows of a ``(2 th - 1) * (2 tw - 1)`` table (made for ``table_window``) for the offsets inside ``window``.

    With ``window == table_window`` this is timm's / Microsoft's index; a smaller window uses the central rows.
    """
    th, tw = table_window[0], table_window[1]
    coords = torch.stack(torch.meshgrid([torch.arange(window[0], device=device),
                                         torch.arange(window[1], device=device)], indexing='ij')).flatten(1)
    rel = coords[:, :, None] - coords[:, None, :]
    return (rel[0] + th - 1) * (2 * tw - 1) + rel[1] + tw - 1


def shifted_window_mask(padded: Tuple[int, int], window: Tuple[int, int], shift: Tuple[int, int],
                        device: Optional[torch.device] = None, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """SW-MSA mask (nW, N, N): -100 between tokens that the cyclic shift brought together from different regions."""
    labels: List[torch.Tensor] = []
    for k in range(2):
        size, w, s = padded[k], window[k], shift[k]
        i = torch.arange(size, device=device)
        labels.append((i >= size - w).long() + (i >= size - s).long() if s != 0 else torch.zeros_like(i))
    region = (labels[0][:, None] * 3 + labels[1][None, :]).to(dtype)
    wins = region.view(padded[0] // window[0], window[0], padded[1] // window[1], window[1])
    wins = wins.permute(0, 2, 1, 3).reshape(-1, window[0] * window[1])
    diff = wins[:, None, :] - wins[:, :, None]
    return torch.zeros_like(diff).masked_fill(diff != 0, -100.0)


def window_geometry(hw: Tuple[int, int], table_window: Tuple[int, int], shifted: bool,
                    device: Optional[torch.device] = None, dtype: torch.dtype = torch.float32) -> WindowGeometry:
    """timm's rule: a dimension no longer than the window is one unshifted window; else window // 2 shift."""
    window = (min(hw[0], table_window[0]), min(hw[1], table_window[1]))
    shift = (table_window[0] // 2 if shifted and hw[0] > table_window[0] else 0,
             table_window[1] // 2 if shifted and hw[1] > table_window[1] else 0)
    index = relative_position_index(window, table_window, device)
    mask: Optional[torch.Tensor] = None
    if shift[0] != 0 or shift[1] != 0:
        padded = ((hw[0] + window[0] - 1) // window[0] * window[0], (hw[1] + window[1] - 1) // window[1] * window[1])
        mask = shifted_window_mask(padded, window, shift, device, dtype)
    return WindowGeometry(window, shift, index, mask)
