"""Metadata that lies is refused (issue 25, item 4): the SHA-256 of a ScaleNet file covers its tensors only, so the
metadata is cross-checked against the tensors (``mmscalenet.checkpoint.crosscheck``) and, where a writer stored
one, against its own ``meta_sha256``. Sizes from a file are checked before the model they describe is built."""
import copy

import pytest
import torch

from conftest import TINY_ARCH
from mmscalenet.checkpoint import CheckpointError, load_scalenet, save_scalenet, scalenet_meta, tensor_digest
from mmscalenet.checkpoint.crosscheck import (DIGEST_KEY, crosscheck_meta, fit_before_build, meta_digest,
                                              verify_meta_digest)
from mmscalenet.models import ScaleNetViT


def _tiny(adapter=dict(type='ParallelAdapter', bottleneck=4), **kw):
    return ScaleNetViT(TINY_ARCH, depth=6, adapter=adapter, img_size=32, patch_size=8, **kw).eval()


def _resave(path, edit):
    """Load the file as plain data, apply ``edit(state, meta)``, store it again with a fresh tensor checksum (a lie
    the tensor SHA-256 cannot see)."""
    obj = torch.load(path, weights_only=True)
    state, meta = obj['state_dict'], obj['meta']['scalenet']
    meta.pop(DIGEST_KEY, None)   # the liar strips the record's digest too: the tensor cross-check alone must refuse
    edit(state, meta)
    meta['sha256'] = tensor_digest(state)
    torch.save(obj, path)


def test_honest_file_passes(tmp_path):
    path = str(tmp_path / 'm.pth')
    save_scalenet(_tiny(), path)
    model, _ = load_scalenet(path)
    assert len(model.plan.sources) == 6


@pytest.mark.parametrize('suffix', ['.pth', '.safetensors'])
def test_files_written_now_carry_the_record_digest_and_an_edited_record_is_refused(tmp_path, suffix):
    """save_scalenet stores meta_sha256, so even a swapped plan of the same length (same tensors) is refused."""
    from mmscalenet.checkpoint import read_checkpoint
    path = str(tmp_path / f'm{suffix}')
    save_scalenet(_tiny(), path)
    meta = read_checkpoint(path)[1]
    assert meta[DIGEST_KEY] == meta_digest(meta)
    if suffix == '.pth':
        obj = torch.load(path, weights_only=True)
        record = obj['meta']['scalenet']
        config = record.get('config', record)
        key = 'mapping' if 'mapping' in config else 'sources'
        config[key] = list(reversed(config[key]))
        torch.save(obj, path)
        with pytest.raises(CheckpointError, match='does not match the meta_sha256'):
            load_scalenet(path)


@pytest.mark.parametrize('adapter, kind', [(dict(type='ParallelAdapter', bottleneck=4), 'adapter'),
                                           (dict(type='LoRA', rank=2), 'LoRA')])
def test_adapter_set_to_none_with_its_tensors_still_there_is_refused(tmp_path, adapter, kind):
    path = str(tmp_path / 'm.pth')
    save_scalenet(_tiny(adapter), path)
    _resave(path, lambda state, meta: meta.update(adapter=None))
    with pytest.raises(CheckpointError, match=rf'holds tensors that the model its metadata describes does not '
                                              rf'have .*adapter=None.*{kind}'):
        load_scalenet(path)


def test_adapter_tensors_missing_while_the_metadata_names_an_adapter_is_refused(tmp_path):
    path = str(tmp_path / 'm.pth')
    save_scalenet(_tiny(), path)

    def drop(state, meta):
        for key in [k for k in state if 'adapter' in k]:
            del state[key]
    _resave(path, drop)
    with pytest.raises(CheckpointError, match='lacks tensors .*adapter'):
        load_scalenet(path)


def test_extra_tensor_the_model_does_not_use_is_refused(tmp_path):
    path = str(tmp_path / 'm.pth')
    save_scalenet(_tiny(), path)
    _resave(path, lambda state, meta: state.update({'positions.3.extra.weight': torch.zeros(2)}))
    with pytest.raises(CheckpointError, match=r'does not have .*positions \[3\].*positions\.3\.extra\.weight'):
        load_scalenet(path)


def test_swapped_plan_of_the_same_length_is_found_by_the_metadata_digest():
    model = _tiny()
    state = model.state_dict()
    meta = scalenet_meta(model)
    meta[DIGEST_KEY] = meta_digest(meta)
    crosscheck_meta(meta, state, 'f.pth')                         # as written: passes
    swapped = copy.deepcopy(meta)
    swapped['sources'] = list(reversed(swapped['sources']))
    assert swapped['sources'] != meta['sources']
    with pytest.raises(CheckpointError, match='does not match the meta_sha256'):
        crosscheck_meta(swapped, state, 'f.pth')
    meta_sha = dict(meta, **{DIGEST_KEY: 'x'})
    with pytest.raises(CheckpointError, match='malformed'):
        verify_meta_digest(meta_sha, 'f.pth')
    del swapped[DIGEST_KEY]
    crosscheck_meta(swapped, state, 'f.pth')                      # no digest (older files): tensors only


def test_sizes_are_checked_on_the_meta_device_before_allocation():
    """Metadata saying embed_dims=2**20 (a 12 TB qkv weight if it were allocated): refused from the shapes."""
    state = _tiny().state_dict()
    kwargs = dict(arch=dict(TINY_ARCH, embed_dims=2 ** 20, num_heads=4), depth=6, img_size=32, patch_size=8,
                  adapter=dict(type='ParallelAdapter', bottleneck=4))
    with pytest.raises(CheckpointError, match=r'run.pth: tensor .* has shape .*1048576'):
        fit_before_build(kwargs, state, 'run.pth')
    fit_before_build(dict(kwargs, arch=TINY_ARCH), state, 'run.pth')   # the true sizes pass
