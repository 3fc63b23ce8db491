"""Engine components: the sharing-aware layer-decay optimizer constructor and training hooks (the work-dir lock's
in lock_hook.py)."""
from . import hooks, layer_decay, lock_hook  # noqa: F401
