"""TorchScript mirrors of the grown models (pure torch + timm's scriptable functions).

The eager models pass each shared block to its positions at call time, which TorchScript cannot express (modules
are not values there). ``torch.jit.script(model)`` calls ``model.__prepare_scriptable__()``, which returns a mirror
from this file: the same parameter and module objects (the shared blocks registered under every position that runs
them; TorchScript keeps one tensor), with the adapters' reference arithmetic (``reference_in`` / ``reference_out``,
the readable definition the fused kernels are tested against). So a scripted model computes the eager model's
function, up to the fused kernels' rounding, for every input size, and training the scripted module trains the
eager model's tensors. The grown Swin's stage is also a torch.fx leaf (timm's tracer), and a traced graph scripts
through :class:`ScriptSwinStage`.
"""
from typing import List, Optional, Tuple

import torch
import torch.nn.functional as F
from timm.layers import drop_path
from timm.models.vision_transformer_sam import window_partition, window_unpartition
from torch import nn

from .adapters import ParallelAdapter
from .position import decomposed_rel_pos_bias
from .swin_windows import WindowGeometry, window_geometry
from .shape_ops import pad_to_multiple, resample_pos_embed


class ScriptPosition(nn.Module):
    """One ViT position with its shared block's modules registered: norms, projections with LoRA deltas and
    parallel adapters, residual gates, (window / global) attention with optional decomposed rel-pos tables."""

    def __init__(self, pos: nn.Module, block: nn.Module):
        super().__init__()
        self.norm1 = pos.norm1 if pos.norm1 is not None else block.norm1
        self.norm2 = pos.norm2 if pos.norm2 is not None else block.norm2
        self.qkv, self.proj, self.fc1, self.fc2 = block.attn.qkv, block.attn.proj, block.mlp.fc1, block.mlp.fc2
        self.pa_attn = pos.adapter_attn if isinstance(pos.adapter_attn, ParallelAdapter) else None
        self.pa_mlp = pos.adapter_mlp if isinstance(pos.adapter_mlp, ParallelAdapter) else None
        lora = pos.lora if pos.lora is not None else {}
        self.lora_qkv = lora['qkv'] if 'qkv' in lora else None
        self.lora_proj = lora['proj'] if 'proj' in lora else None
        self.lora_fc1 = lora['fc1'] if 'fc1' in lora else None
        self.lora_fc2 = lora['fc2'] if 'fc2' in lora else None
        self.gate_attn, self.gate_mlp = pos.gate_attn, pos.gate_mlp
        self.rel_pos_h = getattr(pos, 'rel_pos_h', None)
        self.rel_pos_w = getattr(pos, 'rel_pos_w', None)
        self.num_heads, self.head_dim = pos.num_heads, pos.head_dim
        self.window_size, self.dense, self.drop_prob = pos.window_size, pos.dense, float(pos.drop_path)

    def _in_attn(self, h: torch.Tensor) -> torch.Tensor:
        y = self.qkv(h)
        if self.lora_qkv is not None:
            y = y + self.lora_qkv(h)
        return y

    def _out_attn(self, o: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        y = self.proj(o)
        if self.lora_proj is not None:
            y = y + self.lora_proj(o)
        if self.pa_attn is not None:
            y = y + self.pa_attn(h)
        return y

    def _mlp(self, h: torch.Tensor) -> torch.Tensor:
        z = self.fc1(h)
        if self.lora_fc1 is not None:
            z = z + self.lora_fc1(h)
        z = F.gelu(z)
        y = self.fc2(z)
        if self.lora_fc2 is not None:
            y = y + self.lora_fc2(z)
        if self.pa_mlp is not None:
            y = y + self.pa_mlp(h)
        return y

    def _residual(self, x: torch.Tensor, branch: torch.Tensor, gate: Optional[torch.Tensor]) -> torch.Tensor:
        if gate is not None:
            branch = branch * gate
        return x + drop_path(branch, self.drop_prob, self.training)

    def _attend(self, h: torch.Tensor, gh: int, gw: int) -> torch.Tensor:
        B, N, C = h.shape[0], h.shape[1], h.shape[2]
        qkv = self._in_attn(h).reshape(B, N, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        bias: Optional[torch.Tensor] = None
        rel_h, rel_w = self.rel_pos_h, self.rel_pos_w
        if rel_h is not None and rel_w is not None and gh > 0:
            bias = decomposed_rel_pos_bias(q, (gh, gw), rel_h, rel_w)
        o = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
        return self._out_attn(o.transpose(1, 2).reshape(B, N, C), h)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.norm1(x)
        if self.dense:
            B, H, W, C = x.shape[0], x.shape[1], x.shape[2], x.shape[3]
            if self.window_size > 0:
                ws = self.window_size
                windows, padded = window_partition(h, ws)
                a = self._attend(windows.reshape(-1, ws * ws, C), ws, ws)
                a = window_unpartition(a.view(-1, ws, ws, C), ws, (H, W), padded)
            else:
                a = self._attend(h.reshape(B, H * W, C), H, W).view(B, H, W, C)
        else:
            a = self._attend(h, 0, 0)
        x = self._residual(x, a, self.gate_attn)
        return self._residual(x, self._mlp(self.norm2(x)), self.gate_mlp)


class ScriptViT(nn.Module):
    """Mirror of ``ScaleNetViT.forward``: a list with the class token or the maps at ``out_indices``."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.proj, self.pos_embed, self.cls_token = model.patch_embed.proj, model.pos_embed, model.cls_token
        self.norm = model.norm
        self.patch_size, self.grid_h, self.grid_w = model.patch_size, model.grid[0], model.grid[1]
        self.embed_dims = model.embed_dims
        self.out_indices: List[int] = list(model.out_indices)
        self.positions = nn.ModuleList(ScriptPosition(model.positions[p], model.blocks[model.plan.sources[p]])
                                       for p in range(len(model.positions)))
        self.global_pool: str = model.global_pool
        self.head_drop, self.head = model.head_drop, model.head

    def encode(self, x: torch.Tensor, collect: bool) -> Tuple[torch.Tensor, List[torch.Tensor]]:
        x = self.proj(pad_to_multiple(x, self.patch_size))
        B, H, W = x.shape[0], x.shape[2], x.shape[3]
        pos = resample_pos_embed(self.pos_embed, H, W, self.grid_h, self.grid_w)
        cls_token = self.cls_token
        if cls_token is not None:
            x = x.flatten(2).transpose(1, 2)
            x = torch.cat([cls_token.expand(B, -1, -1) + pos[:, :1], x + pos[:, 1:]], dim=1)
        else:
            x = x.permute(0, 2, 3, 1) + pos[:, 1:].reshape(1, H, W, self.embed_dims)
        outs: List[torch.Tensor] = []
        norm = self.norm
        p, last = 0, len(self.positions) - 1
        for position in self.positions:
            x = position(x)
            if collect and p in self.out_indices:
                if norm is not None:
                    outs.append((norm(x) if p == last else x)[:, 0])
                else:
                    outs.append(x.permute(0, 3, 1, 2).contiguous())
            p += 1
        return x, outs

    def features(self, x: torch.Tensor) -> torch.Tensor:
        x, _ = self.encode(x, False)
        norm = self.norm
        if norm is not None:
            return norm(x)
        return x.permute(0, 3, 1, 2)

    def forward(self, x: torch.Tensor) -> List[torch.Tensor]:
        return self.encode(x, True)[1]


class ScriptViTClassifier(ScriptViT):
    """Mirror of the timm classifier's ``forward``: ``forward_head(forward_features(x))``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        x = self.features(x)
        if self.cls_token is None:
            if self.global_pool != '':
                x = x.mean(dim=(2, 3))
        elif self.global_pool == 'avg':
            x = x[:, 1:].mean(dim=1)
        elif self.global_pool == 'token':
            x = x[:, 0]
        return self.head(self.head_drop(x))


class ScriptSwinPosition(ScriptPosition):
    """One Swin position: (shifted) window attention with its bias table, then the MLP (mirror of SwinPosition)."""

    def __init__(self, pos: nn.Module, block: nn.Module):
        super().__init__(pos, block)
        table = pos.relative_position_bias_table
        self.table = table if table is not None else block.attn.relative_position_bias_table
        self.shifted: bool = bool(pos.shifted)

    def attention(self, h: torch.Tensor, geo: WindowGeometry) -> torch.Tensor:
        B, H, W, C = h.shape[0], h.shape[1], h.shape[2], h.shape[3]
        wh, ww, sh, sw = geo.window[0], geo.window[1], geo.shift[0], geo.shift[1]
        if sh != 0 or sw != 0:
            h = torch.roll(h, shifts=(-sh, -sw), dims=(1, 2))
        pad_h, pad_w = (wh - H % wh) % wh, (ww - W % ww) % ww
        h = F.pad(h, (0, 0, 0, pad_w, 0, pad_h))
        Hp, Wp = H + pad_h, W + pad_w
        win = h.view(B, Hp // wh, wh, Wp // ww, ww, C).permute(0, 1, 3, 2, 4, 5).reshape(-1, wh * ww, C)
        Bw, N = win.shape[0], win.shape[1]
        qkv = self._in_attn(win).reshape(Bw, N, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        bias = self.table[geo.index.view(-1)].view(N, N, -1).permute(2, 0, 1).unsqueeze(0).to(q.dtype)
        mask = geo.mask
        if mask is not None:
            nW = mask.shape[0]
            bias = (bias.unsqueeze(1) + mask.to(q.dtype).view(1, nW, 1, N, N)).expand(
                Bw // nW, -1, -1, -1, -1).reshape(Bw, self.num_heads, N, N)
        o = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
        o = self._out_attn(o.transpose(1, 2).reshape(Bw, N, C), win)
        o = o.view(B, Hp // wh, Wp // ww, wh, ww, C).permute(0, 1, 3, 2, 4, 5).reshape(B, Hp, Wp, C)
        o = o[:, :H, :W, :]
        if sh != 0 or sw != 0:
            o = torch.roll(o, shifts=(sh, sw), dims=(1, 2))
        return o

    def forward_geo(self, x: torch.Tensor, geo: WindowGeometry) -> torch.Tensor:
        x = self._residual(x, self.attention(self.norm1(x), geo), self.gate_attn)
        return self._residual(x, self._mlp(self.norm2(x)), self.gate_mlp)


class ScriptSwinStage(nn.Module):
    """Mirror of ``SwinStage``: patch merging, then the positions; the window geometry computed in the graph."""

    def __init__(self, stage: nn.Module):
        super().__init__()
        self.downsample = stage.downsample
        self.table_window: Tuple[int, int] = (int(stage.table_window[0]), int(stage.table_window[1]))
        self.positions = nn.ModuleList(ScriptSwinPosition(pos, stage.blocks[stage.plan.sources[p]])
                                       for p, pos in enumerate(stage.positions))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.downsample(x)
        hw = (x.shape[1], x.shape[2])
        plain = window_geometry(hw, self.table_window, False, x.device, x.dtype)
        shifted = window_geometry(hw, self.table_window, True, x.device, x.dtype)
        for position in self.positions:
            x = position.forward_geo(x, shifted if position.shifted else plain)
        return x


class ScriptSwin(nn.Module):
    """Mirror of ``ScaleNetSwin.forward``: a list of the normed maps (or pooled features) at ``out_indices``."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.proj, self.embed_norm, self.patch_size = model.patch_embed.proj, model.patch_embed.norm, model.patch_size
        self.layers = nn.ModuleList(ScriptSwinStage(stage) for stage in model.layers)
        self.out_indices: List[int] = [i for i in model.out_indices if i < len(model.layers)]
        self.out_norms = nn.ModuleList(getattr(model, f'norm{i}') for i in self.out_indices)
        self.pooled: bool = model.out_type == 'pooled'
        last = getattr(model, f'norm{len(model.layers) - 1}', None)
        self.final_norm = last if last is not None else nn.Identity()
        self.head = model.head

    def stages(self, x: torch.Tensor) -> Tuple[torch.Tensor, List[torch.Tensor]]:
        x = self.embed_norm(self.proj(pad_to_multiple(x, self.patch_size)).permute(0, 2, 3, 1))
        taken: List[torch.Tensor] = []
        s = 0
        for stage in self.layers:
            x = stage(x)
            if s in self.out_indices:
                taken.append(x)
            s += 1
        return x, taken

    def forward(self, x: torch.Tensor) -> List[torch.Tensor]:
        _, taken = self.stages(x)
        outs: List[torch.Tensor] = []
        for i, norm in enumerate(self.out_norms):
            y = norm(taken[i])
            outs.append(y.mean((1, 2)) if self.pooled else y.permute(0, 3, 1, 2).contiguous())
        return outs


class ScriptSwinClassifier(ScriptSwin):
    """Mirror of the timm Swin classifier's ``forward``: final norm, ``ClassifierHead`` (NHWC)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        x, _ = self.stages(x)
        return self.head(self.final_norm(x))


def script_mirror(model: nn.Module) -> nn.Module:
    """The TorchScript mirror of a ScaleNet ViT / Swin (backbone or timm classifier)."""
    classifier = bool(getattr(model, 'timm_classifier', False))
    if hasattr(model, 'layers'):
        return ScriptSwinClassifier(model) if classifier else ScriptSwin(model)
    return ScriptViTClassifier(model) if classifier else ScriptViT(model)
