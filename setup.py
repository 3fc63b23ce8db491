"""mmscalenet: ScaleNet depth expansion of pretrained ViTs for OpenMMLab (mmdet 3.x)."""
from setuptools import find_packages, setup

setup(
    name="mmscalenet",
    version="0.1.0",
    description="ScaleNet: grow pretrained ViTs in depth with shared weights and per-position adapters",
    packages=find_packages(include=["mmscalenet", "mmscalenet.*"]),
    python_requires=">=3.9",
    # torch and mmcv are installed by scripts/install.sh (mmcv must be compiled with ops).
    install_requires=["timm>=0.9", "mmengine>=0.10", "mmdet>=3.2", "safetensors"],
)
