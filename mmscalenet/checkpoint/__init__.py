"""Checkpoints: safe reading and atomic writing, foreign key layouts, loading with remapping between depths, the
ScaleNet file format, export to plain timm, and opt-in safe IO for mmengine. One concern per module:

* ``io``: safe ``torch.load`` / safetensors / ``timm:NAME`` / URLs, atomic writes, SHA-256, NaN / inf checks;
* ``convert``: timm / DeiT / MAE / mmpretrain / ``backbone.`` key layouts, position-embedding resizing;
* ``format``: the ScaleNet file (unique tensors + the plan as metadata), its validation, rebuilding a model;
* ``load``: loading into a ``ScaleNetViT``, grown to its plan or remapped from another depth;
* ``export``: untying and merging into a plain timm ``VisionTransformer``;
* ``mmengine_io``: :func:`safe_mmengine_io`, safe loading and atomic saving for mmengine inside a ``with`` block.

Dependencies point one way: ``io`` <- ``convert`` <- ``format`` <- ``load`` -> ``models.vit``; the model never
imports this package (``load`` gives ``ScaleNetViT.load_pretrained`` its loader). Pure torch at import time.
"""
from .convert import backbone_state_dict, check_tensors_fit, match_gate_shapes, resize_pos_embed, split_checkpoint
from .export import NotMergeableError, check_exportable, timm_head, timm_kwargs, untied_state_dict
from .format import (build_from_meta, model_kwargs_from_meta, read_checkpoint, save_safetensors, save_scalenet,
                     scalenet_meta, unique_state_dict, validate_meta)
from .io import (FORMAT_VERSION, META_KEY, CheckpointError, allowed_globals, atomic_save, atomic_write, check_finite,
                 resolve_checkpoint, safe_load, tensor_digest, verify_digest)
from .load import (check_recorded_config, convert_for_model, load_into_backbone, load_scalenet,
                   position_correspondence, remap_positions)
from .mmengine_io import mmengine_safe_globals, safe_io_active, safe_mmengine_io

__all__ = [
    'FORMAT_VERSION', 'META_KEY', 'CheckpointError', 'NotMergeableError', 'allowed_globals', 'atomic_save',
    'atomic_write', 'backbone_state_dict', 'build_from_meta', 'check_exportable', 'check_finite',
    'check_recorded_config', 'check_tensors_fit', 'convert_for_model', 'load_into_backbone', 'load_scalenet',
    'match_gate_shapes', 'mmengine_safe_globals', 'model_kwargs_from_meta', 'position_correspondence',
    'read_checkpoint', 'remap_positions', 'resize_pos_embed', 'resolve_checkpoint', 'safe_io_active', 'safe_load',
    'safe_mmengine_io', 'save_safetensors', 'save_scalenet', 'scalenet_meta', 'split_checkpoint', 'tensor_digest',
    'timm_head', 'timm_kwargs', 'unique_state_dict', 'untied_state_dict', 'validate_meta', 'verify_digest',
]
