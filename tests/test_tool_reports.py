"""What the tools (and OpenMMLab's, after ``import mmscalenet``) report (issue 24, items 5 and 7): ImageNet classes as
words, attention counted by mmengine's FLOP counter, progress of a long FLOP count, a config shrunk by ``--smoke``."""
import os.path as osp

import torch

from conftest import ROOT

DIGITS_CLS = osp.join(ROOT, 'configs', 'demo', 'digits_cls_scalenet.py')


def test_imagenet_wordnet_ids_read_as_words():
    from mmscalenet.datasets.imagenet import readable_class_names
    assert readable_class_names(['n01440764', 'n01443537']) == ['tench', 'goldfish']
    assert readable_class_names(['0', '1']) == ['0', '1']                          # other names: unchanged
    assert readable_class_names(['n01440764', 'n99999999']) == ['n01440764', 'n99999999']   # not all known


def test_mmengine_counts_attention_after_import():
    """mmdet's get_flops.py uses mmengine's get_model_complexity_info, which has no handle for SDPA."""
    import mmscalenet  # noqa: F401
    from mmengine.analysis import FlopAnalyzer

    class Attention(torch.nn.Module):
        def forward(self, q):
            return torch.nn.functional.scaled_dot_product_attention(q, q, q)

    q = torch.zeros(1, 2, 4, 8)                           # batch 1, 2 heads, 4 tokens, 8 dims
    flops = FlopAnalyzer(Attention(), (q,)).unsupported_ops_warnings(False).total()
    assert flops == 1 * 2 * 4 * 4 * (8 + 8)               # q k^T and attn v


def test_get_flops_says_what_it_counts_while_it_counts(capsys):
    import importlib.util
    spec = importlib.util.spec_from_file_location('mmscalenet_get_flops', osp.join(ROOT, 'tools', 'analysis',
                                                                                    'get_flops.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.main([DIGITS_CLS]) == 0
    out = capsys.readouterr()
    assert '[1/3] counting ScaleNetViT 4->8' in out.err and '[3/3] done in' in out.err
    assert '| ScaleNetViT 4->8' in out.out


def test_smoke_shrinks_the_config_and_options_apply_on_top():
    from mmscalenet.smoke import format_options, load_smoke_config
    from mmscalenet.tools_common import default_work_dir
    cfg = load_smoke_config(DIGITS_CLS, {'train_dataloader.batch_size': 3})
    assert cfg.model.backbone.arch == dict(embed_dims=32, num_layers=4, num_heads=2, mlp_ratio=2.0)
    assert cfg.model.backbone.depth == 8 and cfg.model.init_cfg is None       # grown, no pretrained weights
    assert cfg.train_cfg.max_epochs == 1 and cfg.train_dataloader.batch_size == 3   # the user's option wins
    assert default_work_dir(cfg, DIGITS_CLS, smoke=True) == './work_dirs/smoke/digits_cls_scalenet'
    assert format_options({'a.b': (64, 64), 'c': [32, 32], 'd': (1,), 'e': None}) == [
        'a.b=(64,64)', 'c=[32,32]', 'd=(1,)', 'e=None']
