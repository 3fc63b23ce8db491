"""Shared set-up of tools/train.py and tools/test.py: config loading with clear errors, work dir, launcher."""
import os
import os.path as osp


def load_config(path, cfg_options=None):
    """``Config.fromfile`` + ``--cfg-options``, with errors that name the file or key."""
    from mmengine.config import Config
    if not osp.isfile(path):
        raise SystemExit(f'config file not found: {path}')
    import mmscalenet  # noqa: F401  (registers modules even when the config forgets custom_imports)
    cfg = Config.fromfile(path)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    return cfg


def build_runner_cfg(cfg, config_path, work_dir=None, launcher='none'):
    cfg.launcher = launcher
    if work_dir is not None:
        cfg.work_dir = work_dir
    elif cfg.get('work_dir', None) is None:
        cfg.work_dir = osp.join('./work_dirs', osp.splitext(osp.basename(config_path))[0])
    os.makedirs(cfg.work_dir, exist_ok=True)
    return cfg
