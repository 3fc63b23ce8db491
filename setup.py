"""mmscalenet: ScaleNet depth expansion of pretrained ViTs for OpenMMLab (mmdet 3.x).

Like mmdet, the package carries its configs, tools and model index under ``mmscalenet/.mim`` so that ``mim`` and
mmengine's ``mmscalenet::PATH`` config inheritance find them: copied there when a wheel or sdist is built, linked
there by an editable (develop) install so edits in the checkout show through.

Both kinds of install also put ``mmscalenet-config-scheme.pth`` into site-packages: at interpreter start-up it only
appends an import hook, which adds ``mmscalenet`` to mmengine's ``PACKAGE::`` table when mmengine's config module is
first imported (``_mmscalenet_config_scheme.py``). That is what lets mmdet's own tools read a config whose
``_base_`` is ``'mmscalenet::...'``: mmengine parses ``_base_`` before ``custom_imports`` could import mmscalenet.
"""
import os
import os.path as osp
import shutil
import sys

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py

try:
    from setuptools.command.editable_wheel import editable_wheel
except ImportError:   # setuptools < 64: no PEP 660 editable installs to extend
    editable_wheel = None

HERE = osp.dirname(osp.abspath(__file__))
MIM_ITEMS = ('configs', 'tools', 'model-index.yml')


def add_mim_extension():
    """Put ``MIM_ITEMS`` under ``mmscalenet/.mim``: symlinks for develop / editable installs, copies otherwise."""
    if {'develop', 'editable_wheel'} & set(sys.argv):
        mode = 'symlink'
    elif {'sdist', 'bdist_wheel', 'build', 'build_py', 'install', 'bdist_egg'} & set(sys.argv):
        mode = 'copy'
    else:
        return
    mim = osp.join(HERE, 'mmscalenet', '.mim')
    os.makedirs(mim, exist_ok=True)
    for item in MIM_ITEMS:
        src, dst = osp.join(HERE, item), osp.join(mim, item)
        if osp.islink(dst) or osp.isfile(dst):
            os.remove(dst)
        elif osp.isdir(dst):
            shutil.rmtree(dst)
        if not osp.exists(src):
            continue
        if mode == 'symlink':
            try:
                os.symlink(osp.relpath(src, mim), dst)
                continue
            except OSError:  # no symlinks (e.g. Windows without privileges): fall back to copies
                pass
        if osp.isdir(src):
            shutil.copytree(src, dst, ignore=shutil.ignore_patterns('__pycache__', '*.pyc'))
        else:
            shutil.copy2(src, dst)


HOOK_MODULE = '_mmscalenet_config_scheme'
PTH_NAME = 'mmscalenet-config-scheme.pth'
PTH_LINE = f'import {HOOK_MODULE}; {HOOK_MODULE}.install()\n'   # site.py runs .pth lines that start with "import"


class BuildPyWithPth(build_py):
    """build_py that also puts the ``.pth`` at the root of the build (a regular wheel installs it into
    site-packages). An editable build ignores the build folder: :class:`EditableWheelWithPth` adds it there."""

    def run(self):
        super().run()
        if not self.editable_mode:
            with open(osp.join(self.build_lib, PTH_NAME), 'w') as f:
                f.write(PTH_LINE)

    def get_outputs(self, *args, **kwargs):
        outputs = list(super().get_outputs(*args, **kwargs))
        return outputs if self.editable_mode else outputs + [osp.join(self.build_lib, PTH_NAME)]


class EditableWheelWithPth(editable_wheel or object):
    """PEP 660 editable wheel (``pip install -e .``) with the ``.pth`` added: the wheel setuptools made is rewritten
    with one more file (its RECORD regenerated, so pip installs and uninstalls it like every other file)."""

    def _create_wheel_file(self, bdist_wheel):
        from wheel.wheelfile import WheelFile
        path = super()._create_wheel_file(bdist_wheel)
        with WheelFile(path) as old:
            members = [(info, old.read(info)) for info in old.infolist() if not info.filename.endswith('/RECORD')]
        with WheelFile(path, 'w') as new:
            for info, data in members:
                new.writestr(info, data)
            new.writestr(PTH_NAME, PTH_LINE)
        return path


add_mim_extension()
setup(
    name='mmscalenet',
    version='0.1.0',
    description='ScaleNet: grow pretrained ViTs in depth with shared weights and per-position adapters',
    packages=find_packages(include=['mmscalenet', 'mmscalenet.*']),
    py_modules=[HOOK_MODULE],
    cmdclass=dict(build_py=BuildPyWithPth, **({'editable_wheel': EditableWheelWithPth} if editable_wheel else {})),
    package_data={'mmscalenet': ['.mim/model-index.yml', '.mim/configs/**/*.py', '.mim/configs/**/*.yml',
                                 '.mim/tools/*.py', '.mim/tools/*.sh', '.mim/tools/**/*.py']},
    include_package_data=False,
    python_requires='>=3.9',
    # torch >= 2.5: torch.serialization.safe_globals (safe checkpoint loading) and device-typed autocast queries.
    # mmcv must carry its compiled ops (nms, RoIAlign): PyPI has mmcv 2.1.0 only as source, which
    # scripts/install.sh builds once into a wheel cache; an environment that already runs mmdet 3.x has it.
    install_requires=['torch>=2.5', 'torchvision', 'timm>=0.9', 'mmengine>=0.10,<1.0', 'mmcv>=2.0.0,<2.2.0',
                      'mmdet>=3.2,<3.4', 'safetensors'],
    extras_require={'deploy': ['onnx>=1.16', 'onnxruntime>=1.18', 'onnxscript']},
    zip_safe=False,
)
