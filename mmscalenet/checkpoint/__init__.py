"""Checkpoints of both backbone families: safe reading and atomic writing, foreign key layouts, loading with
remapping between plans, the ScaleNet file format, export to plain timm, and opt-in safe IO for mmengine. One
concern per module:

* ``io``: safe ``torch.load`` / safetensors / ``timm:NAME`` / URLs, atomic writes, SHA-256, NaN / inf checks;
* ``convert`` / ``convert_swin``: the ViT's (timm / DeiT / MAE / mmpretrain) and the Swin's (timm / Microsoft /
  mmdet) key layouts; ``families``: what else a family keeps to itself at load (arch checks, embeddings);
* ``meta``: the metadata record (family + the backbone's ``config()``), any version of it, rebuilding a model;
  ``validate``: the record against the file's tensors; ``format``: reading and writing the file;
* ``stacks``: per-position tensors between plans, stack by stack; ``recorded``: refusing another backbone;
* ``load``: loading into a backbone, grown to its plans or remapped from others;
* ``export``: untying and merging into a plain timm ``VisionTransformer`` / ``SwinTransformer``;
* ``mmengine_io``: :func:`safe_mmengine_io`, safe loading and atomic saving for mmengine inside a ``with`` block.

Dependencies point one way: this package -> ``models`` (never back: ``mmscalenet/__init__.py`` hands
:func:`load_backbone` to the backbones). Pure torch at import time.
"""
from .convert import backbone_state_dict, check_tensors_fit, match_gate_shapes, resize_pos_embed, split_checkpoint
from .convert_swin import detect_layout, timm_to_unfold_order, to_timm_layout, unfold_to_timm_order
from .export import NotMergeableError, check_exportable, timm_head, timm_kwargs, untied_state_dict
from .format import read_checkpoint, save_safetensors, save_scalenet, unique_state_dict
from .io import (FORMAT_VERSION, META_KEY, CheckpointError, allowed_globals, atomic_save, atomic_write, check_finite,
                 resolve_checkpoint, safe_load, tensor_digest, verify_digest)
from .load import convert_for_model, load_backbone, load_into_backbone, load_scalenet
from .meta import FAMILIES, build_from_meta, family_of, model_kwargs_from_meta, read_record, saved_backbone, \
    scalenet_meta
from .mmengine_io import mmengine_safe_globals, safe_io_active, safe_mmengine_io
from .recorded import check_recorded_config
from .stacks import position_correspondence, remap_positions, remap_stacks, resize_rel_pos
from .validate import validate_meta

__all__ = [
    'FAMILIES', 'FORMAT_VERSION', 'META_KEY', 'CheckpointError', 'NotMergeableError', 'allowed_globals',
    'atomic_save', 'atomic_write', 'backbone_state_dict', 'build_from_meta', 'check_exportable', 'check_finite',
    'check_recorded_config', 'check_tensors_fit', 'convert_for_model', 'detect_layout', 'family_of',
    'load_backbone', 'load_into_backbone', 'load_scalenet', 'match_gate_shapes', 'mmengine_safe_globals',
    'model_kwargs_from_meta', 'position_correspondence', 'read_checkpoint', 'read_record', 'remap_positions',
    'remap_stacks', 'resize_pos_embed', 'resize_rel_pos', 'resolve_checkpoint', 'safe_io_active', 'safe_load',
    'safe_mmengine_io', 'save_safetensors', 'save_scalenet', 'saved_backbone', 'scalenet_meta', 'split_checkpoint',
    'tensor_digest', 'timm_head', 'timm_kwargs', 'timm_to_unfold_order', 'to_timm_layout', 'unfold_to_timm_order',
    'unique_state_dict', 'untied_state_dict', 'validate_meta', 'verify_digest',
]
