"""mmscalenet: ScaleNet depth expansion of pretrained ViTs for OpenMMLab (mmdet 3.x).

Like mmdet, the package carries its configs, tools and model index under ``mmscalenet/.mim`` so that ``mim`` and
mmengine's ``mmscalenet::PATH`` config inheritance find them: copied there when a wheel or sdist is built, linked
there by an editable (develop) install so edits in the checkout show through.
"""
import os
import os.path as osp
import shutil
import sys

from setuptools import find_packages, setup

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


add_mim_extension()
setup(
    name='mmscalenet',
    version='0.1.0',
    description='ScaleNet: grow pretrained ViTs in depth with shared weights and per-position adapters',
    packages=find_packages(include=['mmscalenet', 'mmscalenet.*']),
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
