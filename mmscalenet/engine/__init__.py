"""Engine components: the sharing-aware layer-decay optimizer constructor and training hooks."""
from . import hooks, layer_decay  # noqa: F401
