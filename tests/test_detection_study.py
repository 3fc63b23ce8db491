"""scripts/detection_study.py's reporting: the paired comparison behind docs/detection_transfer.md's claims, on
results written here (no training)."""
import importlib.util
import json
import os
import os.path as osp

import pytest

from conftest import ROOT

_spec = importlib.util.spec_from_file_location('detection_study', osp.join(ROOT, 'scripts', 'detection_study.py'))
study = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(study)


def test_sign_flip_p_is_exact():
    assert study.sign_flip_p([0.01, 0.02, 0.03]) == 2 / 8            # all one sign: the two extreme patterns
    assert study.sign_flip_p([0.01] * 6) == 2 / 64
    assert study.sign_flip_p([1.0, -1.0]) == 1.0                      # mean 0: every pattern is as far
    # [3, 1]: patterns (+,+) 2, (-,-) -2, (+,-) 1, (-,+) -1: two of four as far as 2
    assert study.sign_flip_p([3.0, 1.0]) == 0.5
    # [4, -1, 1]: |mean| 4/3, i.e. |4 s1 - s2 + s3| >= 4: for either s1, three of the four (s2, s3) -> 6 of 8
    assert study.sign_flip_p([4.0, -1.0, 1.0]) == 6 / 8


def test_paired_stats_on_the_seeds_both_runs_have():
    st = study.paired_stats({0: .5, 1: .6, 2: .7, 3: .4}, {0: .5, 1: .5, 2: .8, 9: .1})
    assert st['seeds'] == [0, 1, 2]
    assert st['diffs'] == pytest.approx([0.0, 0.1, -0.1])
    assert (st['wins'], st['ties'], st['losses']) == (1, 1, 1)
    assert st['mean'] == pytest.approx(0.0, abs=1e-12) and st['std'] == pytest.approx(0.1)
    with pytest.raises(ValueError, match='two seeds'):
        study.paired_stats({0: .5, 1: .6}, {1: .5})


def _write_results(cache):
    det = {'scalenet': [.52, .53, .51], 'base': [.50, .52, .51], 'continued': [.51, .53, .50]}
    top1 = {'scalenet': [70.0, 71.0, 69.5], 'base': [68.0, 69.0, 67.0], 'continued': [71.0, 71.5, 70.0]}
    for run, values in det.items():
        for seed, v in enumerate(values):
            os.makedirs(osp.join(cache, 'exp', f'seed{seed}'), exist_ok=True)
            with open(osp.join(cache, 'exp', f'seed{seed}', f'{run}.json'), 'w') as f:
                json.dump(dict(run=run, seed=seed, bbox_mAP=v, bbox_mAP_50=v + .3, segm_mAP=v - .1, curve=[]), f)
    for seed in range(3):
        os.makedirs(osp.join(cache, f'seed{seed}'), exist_ok=True)
        with open(osp.join(cache, f'seed{seed}', 'classify_longer.json'), 'w') as f:
            json.dump({run: dict(top1=v[seed], depth=4, epochs=8, train_seconds=1.0) for run, v in top1.items()}, f)


def test_paired_tables_of_detection_and_classification(tmp_path, capsys):
    _write_results(str(tmp_path))
    study.main(['paired', 'exp', '--cache', str(tmp_path), '--runs', 'scalenet', 'base', 'continued'])
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith('| bbox') or
            line.startswith('| segm')]
    assert len(rows) == 4
    assert rows[0] == ('| bbox_mAP | scalenet - base | 0 1 2 | +0.020 / +0.010 / +0.000 | +0.010 (0.010) | '
                       '2 / 1 / 0 | 0.500 |')
    assert rows[1].startswith('| bbox_mAP | scalenet - continued | 0 1 2 | +0.010 / +0.000 / +0.010 | +0.007')
    study.main(['paired', 'classify-longer', '--cache', str(tmp_path), '--runs', 'scalenet', 'continued'])
    out = capsys.readouterr().out
    assert '| top1 | scalenet - continued | 0 1 2 | -1.00 / -0.50 / -0.50 | -0.67 (0.29) | 0 / 0 / 3 | 0.250 |' in out


def test_paired_refuses_what_it_cannot_compare(tmp_path, capsys):
    _write_results(str(tmp_path))
    for argv, message in ((['paired', 'exp', '--runs', 'scalenet'], 'two runs or more'),
                          (['paired', 'exp', '--runs', 'scalenet', 'scratch'], "no results of \\['scratch'\\]"),
                          (['paired', '--runs', 'scalenet', 'base'], 'one NAME')):
        with pytest.raises(SystemExit) as e:
            study.main(argv + ['--cache', str(tmp_path)])
        assert e.value.code == 2
        assert __import__('re').search(message, capsys.readouterr().err)
