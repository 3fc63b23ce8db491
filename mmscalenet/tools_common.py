"""Shared set-up of the tools (train, test, infer, export, ...): arguments, config loading with clear errors, work dir,
resume, output paths.

Every user mistake found before training starts raises :class:`ToolError` with a message that names the file or
the key; the tools print it and exit with status 1, without creating a work dir.
"""
import inspect
import os
import os.path as osp
import re
import shutil
import sys
import warnings
from typing import Any, Callable, List, Mapping, Optional

CONFIG_SUFFIXES = ('.py', '.json', '.yaml', '.yml')
# The class mmengine's Runner builds for a section that gives no ``type`` (None: by ``by_epoch``); the Runner has no
# API to ask for these defaults.
_SECTION_TYPES = {'train_cfg': None, 'val_cfg': 'ValLoop', 'test_cfg': 'TestLoop', 'log_processor': 'LogProcessor',
                  'optim_wrapper': 'OptimWrapper', 'train_dataloader': 'DataLoader', 'val_dataloader': 'DataLoader',
                  'test_dataloader': 'DataLoader'}


# mmengine looks packages up with pkg_resources (every ``mmdet::`` base of a config, once per lookup), which
# setuptools deprecates with a UserWarning: lines in every tool's output that no user of these tools can act on
warnings.filterwarnings('ignore', message='pkg_resources is deprecated', category=UserWarning)

from .tool_error import ToolError  # noqa: E402  (here since the first release: every tool imports it from here)
from .workdir import LOCK_NAME, WorkDirGuard, WorkDirLock  # noqa: E402  (re-exported: the tools import them here)


def load_config(path: str, cfg_options: Optional[Mapping[str, Any]] = None):
    """``Config.fromfile`` + ``--cfg-options``, with errors that name the file or key."""
    return apply_cfg_options(read_config(path), cfg_options, path)


def read_config(path: str):
    """``Config.fromfile`` with errors that name the file (mmscalenet registered first, for ``mmscalenet::``)."""
    if not osp.isfile(path):
        hint = ' (it is a directory)' if osp.isdir(path) else ''
        raise ToolError(f'config file not found: {path}{hint}')
    if not path.endswith(CONFIG_SUFFIXES):
        raise ToolError(f'{path} is not a config file: expected one of {", ".join(CONFIG_SUFFIXES)}')
    from mmengine.config import Config
    import mmscalenet  # noqa: F401  (registers modules even when the config forgets custom_imports)
    try:
        return Config.fromfile(path)
    except SyntaxError as err:
        raise ToolError(f'{path}: syntax error in the config ({err.filename}, line {err.lineno}): {err.msg}') from None
    except FileNotFoundError as err:
        raise ToolError(f'{path}: {err}') from None
    except (ImportError, KeyError, NameError, TypeError, ValueError, AttributeError) as err:
        raise ToolError(f'{path}: cannot load the config: {type(err).__name__}: {err}') from None


def apply_cfg_options(cfg, cfg_options: Optional[Mapping[str, Any]], path: str):
    """``--cfg-options`` merged into ``cfg`` after :func:`check_cfg_options`; the depth set once."""
    if cfg_options:
        check_cfg_options(cfg, cfg_options, path)
        try:
            cfg.merge_from_dict(dict(cfg_options))
        except (KeyError, TypeError, ValueError, IndexError) as err:
            raise ToolError(f'--cfg-options could not be applied to {path}: {err}') from None
        follow_depth_override(cfg, cfg_options)
    return cfg


def follow_depth_override(cfg, options: Mapping[str, Any]) -> None:
    """``--cfg-options model.backbone.depth=D``: set the depth once. A config that pins the layer-decay depth
    (``optim_wrapper.paramwise_cfg.num_layers``) would contradict the new depth, so unless the same command line
    sets ``num_layers`` too, the pin is dropped and the sharing-aware constructor reads D from the model."""
    if 'model.backbone.depth' not in options or any(k.endswith('paramwise_cfg.num_layers') for k in options):
        return
    optim = cfg.get('optim_wrapper', None) or {}
    paramwise = optim.get('paramwise_cfg', None) or {}
    constructor = str(optim.get('constructor', ''))
    if 'num_layers' in paramwise and constructor.endswith('ScaleNetLayerDecayOptimizerConstructor'):
        pinned = paramwise.pop('num_layers')
        print(f'note: model.backbone.depth={options["model.backbone.depth"]} from --cfg-options replaces the '
              f'config\'s optim_wrapper.paramwise_cfg.num_layers={pinned}: layer decay follows the model\'s depth')


def check_cfg_options(cfg, options: Mapping[str, Any], path: str = 'the config') -> None:
    """Refuse ``--cfg-options`` keys that the config does not have and that nothing would accept.

    A key may be new where a constructor takes it: at the top level the runner's (its arguments and the keys it
    reads from the config), in a dict with ``type=...`` that registered class's, in an untyped Runner section the
    class the Runner builds for it. Any other dict (``arch``, ``paramwise_cfg``, ``metainfo``, an ``init_cfg``) is
    read by its owner, which reports its own mistakes. Unknown top-level keys matter most: mmengine ignores them.
    """
    # mmengine's `KEY._delete_=True`: KEY is replaced by the dict the other `KEY.*` options build
    replaced = [k[:-len('._delete_')] for k, v in options.items() if k.endswith('._delete_') and v]
    root: Any = cfg._cfg_dict if hasattr(cfg, '_cfg_dict') else cfg
    for full_key in options:
        parts = full_key.split('.')
        if not full_key or any(not p for p in parts):
            raise ToolError(f'--cfg-options key {full_key!r} is malformed (empty part)')
        if any(full_key.startswith(prefix + '.') for prefix in replaced):
            continue
        node = root
        for depth, part in enumerate(parts):
            here, parent = '.'.join(parts[:depth + 1]), '.'.join(parts[:depth])
            if node is None:   # mmengine cannot merge keys into None
                raise ToolError(f'--cfg-options key {full_key!r}: {parent} is None in {path}, so it has no keys to '
                                f'set; give it a dict in the config (or a config that inherits from it) first')
            if isinstance(node, (list, tuple)):
                if not re.fullmatch(r'\d+', part):
                    raise ToolError(f'--cfg-options key {full_key!r}: {parent} is a list, so the next part must be '
                                    f'an index, got {part!r}')
                if int(part) >= len(node):
                    raise ToolError(f'--cfg-options key {full_key!r}: {parent} has only {len(node)} entries')
                node = node[int(part)]
                continue
            if not isinstance(node, Mapping):
                raise ToolError(f'--cfg-options key {full_key!r}: {parent} is a {type(node).__name__}, not a dict, '
                                f'so it has no key {part!r}')
            if part in node:
                node = node[part]
                # a component (a dict with a type) replaced by a plain value is a mistake; other dicts may be
                # replaced, as mmengine's merge does (model.backbone.arch=deit-base for an arch dict)
                if depth == len(parts) - 1 and isinstance(node, Mapping) and 'type' in node and \
                        not isinstance(options[full_key], Mapping) and options[full_key] is not None:
                    raise ToolError(f'--cfg-options {full_key}={options[full_key]!r}: {full_key} is a dict in '
                                    f'{path}; set its keys one by one ({full_key}.KEY=VALUE)')
                continue
            accepted = _constructor_arguments(root, node, parts[:depth])
            if accepted is None or part in accepted:
                break   # a new key (and anything below it) is fine here
            raise ToolError(_unknown_key_message(full_key, here, parent or '<top level>', node, path, accepted))


def _constructor_arguments(root: Mapping, node: Mapping, parents: List[str]) -> Optional[set]:
    """The keyword arguments of what ``node`` (reached through ``parents``) is built with; None: any key."""
    if not parents:
        return _runner_keys(root.get('runner_type', None))
    if 'init_cfg' in parents:   # read by the model that owns it too (ScaleNetViT's allow_other_plan)
        return None
    kind = node.get('type')
    if kind is None and len(parents) == 1 and parents[0] in _SECTION_TYPES:
        kind = _SECTION_TYPES[parents[0]] or ('EpochBasedTrainLoop' if node.get('by_epoch', True)
                                              else 'IterBasedTrainLoop')
        if kind == 'DataLoader':
            import torch.utils.data
            kind = torch.utils.data.DataLoader
    return None if kind is None else _accepted_arguments(kind)


def _runner_keys(runner_type: Any = None) -> Optional[set]:
    """Top-level keys the runner uses: its constructor's arguments and what it reads with ``self.cfg.get(KEY)``
    (``compile``, ``model_wrapper_cfg``, ...), found by inspection so they follow the installed mmengine."""
    from mmengine.runner import Runner
    runner = _lookup(runner_type) if isinstance(runner_type, str) else (runner_type or Runner)
    arguments = _accepted_arguments(runner) if inspect.isclass(runner) else None
    if arguments is None:
        return None
    keys = {'runner_type'} | arguments
    for cls in runner.__mro__[:-1]:
        try:
            keys.update(re.findall(r"self\.cfg\.get\(\s*'(\w+)'", inspect.getsource(cls)))
        except (OSError, TypeError):
            pass
    return keys


def _accepted_arguments(kind: Any) -> Optional[set]:
    """Constructor arguments of a registered type; ``None`` when unknown or when it takes ``**kwargs``."""
    target = kind if callable(kind) else _lookup(kind)
    if target is None:
        return None
    try:
        sig = inspect.signature(target.__init__ if inspect.isclass(target) else target)
    except (TypeError, ValueError):
        return None
    if any(p.kind == p.VAR_KEYWORD for p in sig.parameters.values()):
        return None
    return {name for name in sig.parameters if name != 'self'}


def _lookup(name: str):
    """The class or function registered as ``name`` in any of mmdet's registries (each falls back to mmengine's)."""
    try:
        from mmdet import registry as reg
        from mmengine.registry import Registry
    except ImportError:
        return None
    for registry in (r for r in vars(reg).values() if isinstance(r, Registry)):
        try:
            found = registry.get(name)
        except (KeyError, ImportError):
            found = None
        if found is not None:
            return found
    return None


def _unknown_key_message(full_key: str, here: str, parent: str, node: Mapping, path: str,
                         accepted: set) -> str:
    import difflib
    name = here.rsplit('.', 1)[-1]
    close = difflib.get_close_matches(name, sorted(str(k) for k in node.keys()), n=3)
    hint = f' Did you mean {", ".join(repr(c) for c in close)}?' if close else ''
    kind = node.get('type')
    accepts = f' ({kind} accepts: {", ".join(sorted(accepted))})' if kind is not None and accepted else ''
    return f'--cfg-options key {full_key!r} is unknown: {parent} in {path} has no key {name!r}{accepts}.{hint}'


def finish_args(parser, args):
    """What the tools do after ``parse_args`` (so ``--help`` stays fast, without OpenMMLab imports):
    ``--cfg-options KEY=VALUE ...`` -> dict with mmengine's ``DictAction`` value syntax (a malformed item is a usage
    error, status 2), and ``LOCAL_RANK`` from ``--local-rank`` for launchers that pass the flag."""
    import argparse
    from mmengine.config import DictAction
    options: dict = {}
    for item in args.cfg_options or []:
        if '=' not in item or item.startswith('='):
            parser.error(f'--cfg-options expects KEY=VALUE items, got {item!r}')
        namespace = argparse.Namespace(cfg_options=options)
        try:   # one at a time: mmengine's parser recurses forever on some values (e.g. dict(...))
            DictAction(['--cfg-options'], 'cfg_options')(parser, namespace, [item], '--cfg-options')
        except (RecursionError, ValueError, SyntaxError) as err:
            parser.error(f'--cfg-options: cannot parse {item!r} ({type(err).__name__}); values are numbers, '
                         f'strings, booleans, None, lists [a,b] and tuples (a,b); set dict keys one by one (a.b.c=1)')
        options = namespace.cfg_options
    args.cfg_options = options
    if 'LOCAL_RANK' not in os.environ and getattr(args, 'local_rank', None) is not None:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    return args


def is_classifier(cfg) -> bool:
    """Whether the config's model is a ``ScaleNetClassifier`` (scoped or not), not a detector."""
    return str((cfg.get('model', None) or {}).get('type', '')).split('.')[-1] == 'ScaleNetClassifier'


def default_work_dir(cfg, config_path: str, work_dir: Optional[str] = None, smoke: bool = False) -> str:
    """``--work-dir`` > ``./work_dirs/smoke/CONFIG_NAME`` for a --smoke run (its checkpoints never mix with a real
    run's, which --resume would take) > the config's ``work_dir`` > ``./work_dirs/CONFIG_NAME``."""
    name = osp.splitext(osp.basename(config_path))[0]
    if smoke:
        return work_dir or osp.join('./work_dirs/smoke', name)
    return work_dir or cfg.get('work_dir', None) or osp.join('./work_dirs', name)


def build_runner_cfg(cfg, config_path: str, work_dir: Optional[str] = None, launcher: str = 'none'):
    """Set launcher and work dir (:func:`default_work_dir`); creates the folder."""
    cfg.launcher = launcher
    cfg.work_dir = default_work_dir(cfg, config_path, work_dir)
    if osp.isfile(cfg.work_dir):
        raise ToolError(f'work dir {cfg.work_dir} is an existing file')
    os.makedirs(cfg.work_dir, exist_ok=True)
    return cfg


def add_default_hooks(cfg) -> None:
    """Add mmscalenet's NaN/inf loss guard, checkpoint-metadata and exact-resume hooks unless the config has them
    (in ``custom_hooks`` or, as the shipped configs list the metadata hook, in ``default_hooks``)."""
    hooks = list(cfg.get('custom_hooks', None) or [])
    listed = hooks + list((cfg.get('default_hooks', None) or {}).values())
    present = {h.get('type') if isinstance(h, Mapping) else None for h in listed}
    for name in ('StopOnNonFiniteLossHook', 'ScaleNetCheckpointMetaHook', 'ExactResumeHook'):
        if name not in present and f'mmdet.{name}' not in present:
            hooks.append(dict(type=name))
    cfg.custom_hooks = hooks


def latest_checkpoint(work_dir: str) -> Optional[str]:
    """The checkpoint to resume from: ``last_checkpoint``'s target (mmengine's ``find_latest_checkpoint``) when
    it is a complete file, also after the work dir moved; else the newest ``epoch_N.pth`` / ``iter_N.pth`` (a run
    killed while writing the pointer still resumes)."""
    if not osp.isdir(work_dir):
        return None
    if osp.isfile(osp.join(work_dir, 'last_checkpoint')):   # mmengine logs a line when the pointer is missing
        from mmengine.runner import find_latest_checkpoint
        target = find_latest_checkpoint(work_dir)
        if target:
            for path in (target, osp.join(work_dir, osp.basename(target))):
                if osp.isfile(path):
                    return path
    found = []
    for name in os.listdir(work_dir):
        m = re.fullmatch(r'(epoch|iter)_(\d+)\.pth', name)
        if m:
            found.append((int(m.group(2)), osp.getmtime(osp.join(work_dir, name)), name))
    return osp.join(work_dir, max(found)[2]) if found else None


def checkpoint_leftovers(work_dir: str) -> List[str]:
    """Names in ``work_dir`` that show a run saved (or began saving) there: ``last_checkpoint``, ``*.pth``,
    ``*.safetensors``, unfinished ``.tmp-*`` files. ``--resume`` refuses to start from zero over them."""
    if not osp.isdir(work_dir):
        return []
    return sorted(n for n in os.listdir(work_dir) if n == 'last_checkpoint' or n.endswith(('.pth', '.safetensors'))
                  or (n.startswith('.tmp-') and '.pth' in n))


def check_checkpoint_file(path: str, what: str = 'checkpoint') -> None:
    if not osp.exists(path):
        raise ToolError(f'{what} file not found: {path}')
    if not osp.isfile(path):
        raise ToolError(f'{what} {path} is not a file')
    if osp.getsize(path) == 0:
        raise ToolError(f'{what} {path} is empty (an interrupted copy?)')


def user_error_types() -> tuple:
    """Exceptions that, raised while building from a config, are the user's mistake (no traceback needed)."""
    from .checkpoint import CheckpointError
    return (ToolError, CheckpointError, FileNotFoundError, KeyError, TypeError, ValueError, ImportError,
            NotADirectoryError, IsADirectoryError, PermissionError)


def format_error(err: BaseException) -> str:
    """``error: MESSAGE`` on one line. An error re-raised by a DataLoader worker ("Caught X in DataLoader worker
    process N. Original Traceback ...") is reduced to the original message (its last line, without the type)."""
    text = str(err)
    if isinstance(err, KeyError) and len(err.args) == 1 and isinstance(err.args[0], str):
        text = err.args[0]   # KeyError's str() adds quotes around the message
    if 'Original Traceback' in text:
        last = [line for line in text.strip().splitlines() if line.strip()][-1].strip()
        text = re.sub(r'^[\w.]+(Error|Exception): ', '', last)
    return f'error: {text}'


def prepare_or_report(config_path: str, prepare: Callable[[], Any]) -> Any:
    """``prepare()`` (config loading and checks) with user mistakes printed as one ``error:`` line.

    Returns the config, or None after printing the error (the tool then exits with 1). The config path is checked
    first, before the slow OpenMMLab imports that ``prepare`` triggers.
    """
    if not osp.isfile(config_path):
        print(f'error: config file not found: {config_path}', file=sys.stderr)
        return None
    try:
        return prepare()
    except user_error_types() as err:
        print(format_error(err), file=sys.stderr)
        return None


def check_output_path(path: str) -> None:
    """Refuse an output path that cannot be written, before any work: a directory, a parent that is a file, a
    folder where no file can be created (read-only, ``/proc``). Creates nothing (a probe file is removed)."""
    import tempfile
    if osp.isdir(path):
        raise ToolError(f'output {path} is a directory; give a file name')
    parent = osp.dirname(osp.abspath(path))
    existing = parent
    while not osp.exists(existing):
        existing = osp.dirname(existing)
    if not osp.isdir(existing):
        raise ToolError(f'cannot write {path}: {existing} is a file, not a directory')
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as err:
        raise ToolError(f'cannot write {path}: no file can be created in {existing} ({err.strerror or err})') from None


def check_destination(dst: str, force: bool = False, sources: tuple = (), what: str = 'output') -> None:
    """An output file of a tool, before any work: never one of the tool's inputs (``export X X`` would replace the
    ScaleNet source by its export; refused even with --force), never a symbolic link (writing replaces the link by
    a regular file, or would write wherever it points), writable (:func:`check_output_path`), and new unless
    ``force``. Raises :class:`ToolError` with one line (``what``: how the message names the output, e.g. --out)."""
    for src in sources:
        if isinstance(src, str) and osp.exists(src) and osp.exists(dst) and osp.samefile(src, dst):
            raise ToolError(f'{what} {dst} is the input {src}; nothing was written (write the result to another '
                            f'file: this would replace the input)')
    if osp.islink(dst):
        raise ToolError(f'{what} {dst} is a symbolic link (to {os.readlink(dst)}); nothing was written (give the '
                        f'path of a regular file: writing would replace the link or the file it points to)')
    check_output_path(dst)
    if osp.exists(dst) and not force:
        raise ToolError(f'{what} {dst} exists; pass --force to overwrite it')


def write_error(path: str, err: OSError) -> str:
    """One line for an ``OSError`` raised while writing ``path`` (disk full, file too large, ...)."""
    return f'error: writing {path} failed ({err.strerror or err}); nothing was written'


def _pretrained_files(node: Any, where: str) -> List[tuple]:
    """``(key path, checkpoint)`` of every ``init_cfg=dict(type='Pretrained', checkpoint=...)`` in a config."""
    found = []
    if isinstance(node, Mapping):
        if node.get('type') == 'Pretrained' and isinstance(node.get('checkpoint'), str):
            found.append((where, node['checkpoint']))
        for key, value in node.items():
            found += _pretrained_files(value, f'{where}.{key}' if where else str(key))
    elif isinstance(node, (list, tuple)):
        for i, value in enumerate(node):
            found += _pretrained_files(value, f'{where}.{i}')
    return found


def skip_pretrained_init(cfg) -> List[str]:
    """Drop every ``init_cfg=dict(type='Pretrained')`` of ``cfg.model`` (returns their key paths).

    For a resumed run: mmengine initialises the model before it resumes, and the resumed checkpoint replaces every
    tensor the pretrained file would have given, so the run must not need that file (moved, offline ``timm:``).
    """
    skipped = [where for where, _ in _pretrained_files(cfg.get('model', None), 'model')]
    for where in skipped:
        node = cfg
        *parents, last = where.split('.')
        for key in parents:
            node = node[int(key)] if isinstance(node, (list, tuple)) else node[key]
        node[last] = None
    return skipped


def check_training_values(cfg, path: str) -> None:
    """Mistakes that would otherwise surface as a traceback once training starts: a missing ``init_cfg``
    checkpoint file, a batch size that is not a positive integer, a learning rate that is not a finite number >= 0.
    """
    import math
    for where, checkpoint in _pretrained_files(cfg.get('model', None), 'model'):
        if not checkpoint.startswith(('http://', 'https://', 'timm:')):
            check_checkpoint_file(checkpoint, f'{path}: {where}.checkpoint')
    loader = cfg.get('train_dataloader', None) or {}
    size = loader.get('batch_size', 1) if isinstance(loader, Mapping) else 1
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ToolError(f'{path}: train_dataloader.batch_size must be a positive integer, got {size!r}')
    optim = cfg.get('optim_wrapper', None) or {}
    optimizer = optim.get('optimizer', None) if isinstance(optim, Mapping) else None
    lr = optimizer.get('lr', 0.0) if isinstance(optimizer, Mapping) else 0.0
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not math.isfinite(lr) or lr < 0:
        raise ToolError(f'{path}: optim_wrapper.optimizer.lr must be a finite number >= 0, got {lr!r}')
