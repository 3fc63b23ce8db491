"""``_base_ = 'mmscalenet::coco/CONFIG.py'`` for every program that reads configs with mmengine, mmdet's own
``tools/train.py`` and ``tools/test.py`` included.

mmengine resolves ``_base_`` while it parses a config, before the config's ``custom_imports`` import anything, and it
follows ``PACKAGE::`` only for the packages in its own table (``MODULE2PACKAGE``), looking the configs up under the
installed package's ``.mim`` folder. Two things are needed for this package, and this module does both, for this
package's name only:

* the entry ``'mmscalenet'`` in that table;
* a lookup of the package's folder that finds ``.mim`` where mmengine's guess (``site-packages/mmscalenet``) does not:
  an editable install (the package stays in the checkout, ``.mim`` linked there by setup.py), or a checkout used
  without installing (its ``configs/`` and ``model-index.yml`` linked from a per-process temporary ``.mim``).

When: the install puts ``mmscalenet-config-scheme.pth`` into site-packages (setup.py), whose one line runs
:func:`install` at interpreter start-up. That only appends a finder to ``sys.meta_path``; nothing is imported then,
mmengine included. The finder acts once, when ``mmengine.config.config`` is imported: right after that module has
run it calls :func:`patch` and removes itself. ``import mmscalenet`` calls :func:`patch` too (mmscalenet/registry.py),
so the project's tools get the same behaviour where the ``.pth`` is absent (a checkout on ``PYTHONPATH``).

Kept outside the ``mmscalenet`` package on purpose: importing anything inside it runs ``mmscalenet/__init__.py``,
which imports torch.
"""
import sys

PACKAGE = 'mmscalenet'
TARGET = 'mmengine.config.config'   # the module that binds get_installed_path; it imports mmengine.config.utils


def package_dir():
    """The folder of the ``mmscalenet`` package that ``import mmscalenet`` gives (found, not imported), or None."""
    import importlib.util
    import os.path as osp
    try:
        spec = importlib.util.find_spec(PACKAGE)
    except (ImportError, ValueError):
        return None
    return osp.dirname(spec.origin) if spec is not None and spec.origin else None


_LINKED = []   # the temporary folder made for a checkout, one per process


def _checkout_mim(here):
    """For a package folder inside a checkout that was never installed (no ``.mim``): a temporary folder whose
    ``.mim`` links to the checkout's ``configs`` and ``model-index.yml``; None where that is not possible."""
    import atexit
    import os
    import os.path as osp
    import shutil
    import tempfile
    root = osp.dirname(here)
    items = ('configs', 'model-index.yml')
    if not all(osp.exists(osp.join(root, item)) for item in items):
        return None
    if _LINKED and osp.realpath(osp.join(_LINKED[0], '.mim', 'configs')) == osp.realpath(osp.join(root, 'configs')):
        return _LINKED[0]
    folder = tempfile.mkdtemp(prefix='mmscalenet-mim-')
    atexit.register(shutil.rmtree, folder, True)   # removes the links, never what they point to
    try:
        os.mkdir(osp.join(folder, '.mim'))
        for item in items:
            os.symlink(osp.join(root, item), osp.join(folder, '.mim', item))
    except OSError:   # no symlinks here (e.g. Windows without the privilege): mmengine's own error follows
        shutil.rmtree(folder, True)
        return None
    _LINKED[:] = [folder]
    return folder


def mim_root():
    """The folder holding ``.mim`` for this package: the imported package's own (an install of either kind), or a
    temporary one for a checkout that was never installed; None where neither exists."""
    import os.path as osp
    here = package_dir()
    if here is None:
        return None
    if osp.isdir(osp.join(here, '.mim')):
        return here
    return _checkout_mim(here)


def patch(config_module=None):
    """Add this package to mmengine's ``PACKAGE::`` table and wrap ``get_installed_path`` / ``is_installed`` in
    ``config_module`` (mmengine.config.config): for this package they answer from the imported package
    (:func:`mim_root`, without mmengine's pkg_resources and its deprecation warnings); every other package goes to
    mmengine's own functions. Idempotent."""
    config_module = config_module or sys.modules.get(TARGET)
    if config_module is None:
        import importlib
        config_module = importlib.import_module(TARGET)
    sys.modules['mmengine.config.utils'].MODULE2PACKAGE.setdefault(PACKAGE, PACKAGE)
    find, installed = config_module.get_installed_path, config_module.is_installed
    if getattr(find, '_mmscalenet', False):
        return

    def get_installed_path(package):
        return (package == PACKAGE and mim_root()) or find(package)

    def is_installed(package):
        return (package == PACKAGE and package_dir() is not None) or installed(package)

    for wrapper, original in ((get_installed_path, find), (is_installed, installed)):
        wrapper._mmscalenet = True
        wrapper.__doc__ = original.__doc__
        setattr(config_module, original.__name__, wrapper)


class _PatchAfterImport:
    """A ``sys.meta_path`` finder that finds nothing itself: asked for :data:`TARGET`, it takes the spec the other
    finders give and makes its loader call :func:`patch` right after the module has run, then leaves the path."""

    @classmethod
    def find_spec(cls, fullname, path=None, target=None):
        if fullname != TARGET:
            return None
        for finder in [f for f in sys.meta_path if f is not cls]:
            find = getattr(finder, 'find_spec', None)
            spec = find(fullname, path, target) if find is not None else None
            if spec is not None:
                break
        else:
            return None
        uninstall()
        loader = spec.loader
        if loader is None or not hasattr(loader, 'exec_module'):
            return spec
        run = loader.exec_module

        def exec_module(module):
            run(module)
            patch(module)

        loader.exec_module = exec_module   # this spec's own loader object: nothing shared is changed
        return spec


def install():
    """Run by the ``.pth`` line at start-up: :func:`patch` when mmengine's config module is (or gets) imported."""
    if TARGET in sys.modules:
        patch(sys.modules[TARGET])
    elif _PatchAfterImport not in sys.meta_path:
        sys.meta_path.insert(0, _PatchAfterImport)


def uninstall():
    while _PatchAfterImport in sys.meta_path:
        sys.meta_path.remove(_PatchAfterImport)
