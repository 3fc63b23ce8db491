"""The ScaleNet file format, both backbone families: ``{'state_dict': unique tensors, 'meta': {'scalenet': record}}``
(``.pth``) or the same tensors with the record as JSON (``.safetensors``); the record is ``meta.py``'s.

Each shared tensor is stored once and the plans in the record say how to re-tie it, so the file round-trips
bit-exactly and safetensors never sees two tensors sharing memory. Here: writing the file and reading one with its
checks (SHA-256, the record against the tensors, NaN / inf). Loading into a model of other plans is ``load.py``.
"""
from __future__ import annotations

import json
import os
from typing import Any, Dict, Mapping, Optional, Tuple, Union

import torch

from ..models.vit import plain_data
from .convert import backbone_state_dict, split_checkpoint
from .io import META_KEY, CheckpointError, atomic_save, atomic_write, check_finite, resolve_checkpoint, tensor_digest, \
    verify_digest
from .crosscheck import DIGEST_KEY, meta_digest
from .meta import family_of, scalenet_meta
from .validate import validate_meta


def _source_name(source: Any) -> str:
    return os.fspath(source) if isinstance(source, (str, os.PathLike)) else '<state dict>'


def _stored_digest(obj: Any, meta: Mapping[str, Any]) -> Any:
    if 'sha256' in meta:
        return meta['sha256']
    return obj.get('sha256') if isinstance(obj, Mapping) else None


def read_checkpoint(source: Union[str, Mapping[str, Any]], *, allow_nonfinite: bool = False,
                    verify_checksum: bool = True, name: Optional[str] = None
                    ) -> Tuple[Dict[str, torch.Tensor], Dict[str, Any]]:
    """Load and check a checkpoint: ``(state dict, ScaleNet metadata or {})``.

    On top of :func:`split_checkpoint`: the stored SHA-256 is verified (files without one, written before it
    existed, load as they are; ``verify_checksum=False`` skips it), ScaleNet metadata is validated against the
    file's tensors (:func:`validate_meta`), and NaN / infinite tensors are refused unless ``allow_nonfinite``.
    Every error is one :class:`CheckpointError` naming the file.
    """
    name = name or _source_name(source)
    obj = resolve_checkpoint(source)
    try:
        state, meta = split_checkpoint(obj)
    except CheckpointError as err:
        raise CheckpointError(f'{name}: {err}') from None
    expected = _stored_digest(obj, meta)
    if verify_checksum and expected is not None:
        verify_digest(state, expected, name)
    if meta:
        validate_meta(meta, backbone_state_dict(state, family_of(meta, name))[0], name)
    if not allow_nonfinite:
        check_finite(state, name)
    return state, meta


# ---- writing ------------------------------------------------------------------------------------------------------
def unique_state_dict(model) -> Dict[str, torch.Tensor]:
    """Detached, contiguous copies of ``model``'s tensors: no two entries share memory (safetensors-safe).

    Both backbones register each shared tensor once (``blocks.*``), so nothing is lost; the sharing between
    positions is structural and comes back when the model is rebuilt from the plan.
    """
    return {key: value.detach().clone().contiguous() for key, value in model.state_dict().items()}


def save_scalenet(model, path: str, head: Optional[Mapping[str, torch.Tensor]] = None,
                  extra_meta: Optional[Mapping[str, Any]] = None) -> None:
    """Write ``model``'s unique tensors (+ optional classifier head ``head.*``) and its record
    (:func:`~mmscalenet.checkpoint.meta.scalenet_meta`, either family), atomically.

    ``.safetensors`` paths get a safetensors file (metadata as JSON), anything else a ``torch.save`` file that loads
    with ``weights_only=True``.
    """
    state = unique_state_dict(model)
    for k, v in (head or {}).items():
        state[f'head.{k}'] = v.detach().clone().contiguous()
    meta = {META_KEY: scalenet_meta(model)}
    if extra_meta:
        meta.update(plain_data(dict(extra_meta)))
    if os.fspath(path).endswith('.safetensors'):
        save_safetensors(state, meta[META_KEY], path)
    else:
        meta[META_KEY][DIGEST_KEY] = meta_digest(meta[META_KEY])   # the record itself: a swapped plan is found
        meta[META_KEY]['sha256'] = tensor_digest(state)
        atomic_save({'state_dict': state, 'meta': meta}, path)


def save_safetensors(state: Mapping[str, torch.Tensor], meta: Optional[Mapping[str, Any]], path: str,
                     meta_key: str = META_KEY) -> None:
    """safetensors refuses tensors that share memory; ScaleNet stores each shared tensor once, so none do.

    The tensors' SHA-256 (:func:`tensor_digest`) goes into the ScaleNet metadata (``meta_key`` ``scalenet``) or,
    for other metadata, into its own ``sha256`` entry; loading checks it.
    """
    from safetensors.torch import save

    tensors = {k: v.detach().contiguous() for k, v in state.items()}
    digest = tensor_digest(tensors)
    metadata = {'sha256': digest}
    if meta is not None:
        meta = plain_data(dict(meta))
        if meta_key == META_KEY:
            meta[DIGEST_KEY] = meta_digest(meta)
            meta['sha256'] = digest
            del metadata['sha256']
        metadata[meta_key] = json.dumps(meta)
    data = save(tensors, metadata=metadata)
    atomic_write(path, lambda f: f.write(data))
