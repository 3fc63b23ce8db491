"""Classification inference: the inferencer on a tiny trained classifier (names, top-k, JSON, drawn images),
tools/infer.py on a classification config, and tools/test.py --out in a classification format."""
import json
import os.path as osp
import pickle

import numpy as np
import pytest
import torch

from conftest import ROOT, tool_main

pytest.importorskip('mmdet')

CONFIG = osp.join(ROOT, 'configs/demo/digits_cls_scalenet.py')
NAMES = ['zero', 'one', 'two', 'three', 'four', 'five', 'six', 'seven', 'eight', 'nine']
COLOURS = {'a_red.png': ((220, 30, 30), 3), 'b_green.png': ((30, 200, 40), 7), 'c_blue.png': ((20, 40, 230), 1)}


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
    """The demo's grown classifier fitted to three solid-colour images (labels 3, 7, 1), saved as training does."""
    from PIL import Image
    from mmengine.config import Config
    from mmdet.registry import MODELS
    import mmscalenet  # noqa: F401
    tmp = tmp_path_factory.mktemp('cls')
    images = tmp / 'images'
    images.mkdir()
    inputs, labels = [], []
    rng = np.random.RandomState(0)
    for name, (rgb, label) in COLOURS.items():
        arr = np.clip(np.array(rgb)[None, None] + rng.randint(-10, 10, (32, 32, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(arr).save(images / name)
        inputs.append(torch.from_numpy(arr).permute(2, 0, 1).contiguous())
        labels.append(label)
    (images / 'notes.txt').write_text('not an image')
    cfg = Config.fromfile(CONFIG)
    cfg.model.pop('init_cfg')
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    x = model.data_preprocessor(dict(inputs=inputs), training=False)['inputs']
    y = torch.tensor(labels)
    for _ in range(40):
        loss = torch.nn.functional.cross_entropy(model(x, mode='tensor'), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    ckpt = tmp / 'epoch_1.pth'
    torch.save({'state_dict': model.state_dict(), 'meta': {'dataset_meta': {'classes': NAMES}}}, ckpt)
    return dict(images=images, ckpt=ckpt, tmp=tmp)


def test_inferencer_top_k_names_json_and_drawings(trained, tmp_path):
    from mmscalenet.apis import ImageClassificationInferencer
    inferencer = ImageClassificationInferencer(CONFIG, str(trained['ckpt']), device='cpu')
    out = tmp_path / 'preds.json'
    result = inferencer(str(trained['images']), topk=3, batch_size=2, pred_out_file=str(out),
                        img_out_dir=str(tmp_path / 'drawn'))
    preds = result['predictions']
    assert [osp.basename(p['img_path']) for p in preds] == sorted(COLOURS)      # the .txt file is skipped
    assert [p['pred_class'] for p in preds] == [NAMES[COLOURS[n][1]] for n in sorted(COLOURS)]
    for p in preds:
        scores = [t['score'] for t in p['topk']]
        assert len(scores) == 3 and scores == sorted(scores, reverse=True) and sum(scores) <= 1 + 1e-6
        assert p['topk'][0]['label'] == p['pred_label'] and p['topk'][1]['class'] == NAMES[p['topk'][1]['label']]
    assert json.loads(out.read_text()) == preds
    from PIL import Image
    drawn = sorted((tmp_path / 'drawn').iterdir())
    assert [d.name for d in drawn] == ['a_red.png', 'b_green.png', 'c_blue.png']
    assert min(Image.open(drawn[0]).size) >= 256
    # an RGB array works too, and names can be given explicitly
    arr = np.asarray(Image.open(trained['images'] / 'b_green.png'))
    named = ImageClassificationInferencer(CONFIG, str(trained['ckpt']), device='cpu', classes=list('ABCDEFGHIJ'))
    assert named(arr, topk=1)['predictions'][0]['pred_class'] == 'H'
    with pytest.raises(FileNotFoundError, match='image file not found'):
        inferencer(str(tmp_path / 'missing.png'))




def test_tools_infer_on_a_classification_config(trained, tmp_path, capsys):
    out = tmp_path / 'p.json'
    infer = tool_main('infer')
    assert infer([CONFIG, str(trained['ckpt']), str(trained['images']), '--topk', '2', '--out', str(out),
                  '--show-dir', str(tmp_path / 'drawn')]) == 0
    assert 'b_green.png: seven' in capsys.readouterr().out
    assert [p['pred_class'] for p in json.loads(out.read_text())] == ['three', 'seven', 'one']
    assert len(list((tmp_path / 'drawn').iterdir())) == 3
    assert infer([CONFIG, str(trained['ckpt']), str(trained['images']), '--out', 'x.png']) == 1
    assert '--out must be a .json file' in capsys.readouterr().err


def test_tools_test_dumps_classification_predictions(trained, tmp_path):
    out = tmp_path / 'preds.pkl'
    assert tool_main('test')([CONFIG, str(trained['ckpt']), '--work-dir', str(tmp_path / 'w'), '--out', str(out),
                          '--show-dir', str(tmp_path / 'drawn'),
                          '--cfg-options', 'test_dataloader.dataset.val_fraction=0.02']) == 0
    with open(out, 'rb') as f:
        records = pickle.load(f)
    from mmscalenet.datasets.digits import digits_images, split_indices
    expected = len(split_indices(digits_images(32)[1], 0.02, 0)[1])
    assert len(records) == expected and {'pred_score', 'pred_label', 'gt_label'} <= set(records[0])
    assert records[0]['pred_score'].shape == (10,)
    assert len(list((tmp_path / 'drawn').iterdir())) == expected        # --show-dir: one drawn image each


def test_classification_visualizer_writes_the_true_and_predicted_classes(mmdet_scope, tmp_path):
    """The classification configs' visualizer (what mmdet's browse_dataset.py draws with): built without a name, it
    writes the ground truth and the top-k classes by name; an image without a sample is drawn plain."""
    from mmdet.registry import VISUALIZERS

    from mmscalenet.datasets import ScaleNetClsDataSample
    vis = VISUALIZERS.build(dict(type='ScaleNetClsVisualizer'))
    vis.dataset_meta = dict(classes=('cat', 'dog', 'fox'))
    sample = ScaleNetClsDataSample()
    sample.gt_label = torch.tensor([1])
    assert len(sample.gt_instances) == 0 and 'gt_instances' not in sample   # mmdet's tools read it; nothing stored
    sample.pred_score = torch.tensor([0.1, 0.2, 0.7])
    assert vis.lines(sample, topk=2) == ['gt: dog', 'fox: 0.700', 'dog: 0.200']
    assert vis.lines(sample, draw_gt=False, topk=1) == ['fox: 0.700']
    image = np.zeros((32, 32, 3), np.uint8)
    vis.add_datasample('x', image, sample, out_file=str(tmp_path / 'x.png'))
    vis.add_datasample('y', image, None, out_file=str(tmp_path / 'y.png'))
    from PIL import Image
    x, y = (np.asarray(Image.open(tmp_path / f'{n}.png')) for n in 'xy')
    assert x.shape == y.shape == (256, 256, 3)
    assert y.max() == 0 and x.max() > 0   # text only where a sample was given
