"""The package's import graph, drawn from the source (``ast``, lazy imports inside functions included): the models
never import the checkpoint package, and no module imports itself back through others."""
import ast
import os

import pytest

from conftest import ROOT

PACKAGE = os.path.join(ROOT, 'mmscalenet')
# The OpenMMLab / timm faces and the classifier still call the checkpoint package directly. They are listed here,
# by name, so that the list can only shrink: a new file under models/ importing it fails.
FACES_CALLING_THE_CHECKPOINT_PACKAGE = {'mm_backbone.py', 'timm_models.py', 'classifier.py'}


def _module_name(path):
    rel = os.path.relpath(path, ROOT)[:-len('.py')].split(os.sep)
    return '.'.join(rel[:-1] if rel[-1] == '__init__' else rel)


def _modules():
    out = {}
    for folder, _, files in os.walk(PACKAGE):
        for name in files:
            if name.endswith('.py'):
                path = os.path.join(folder, name)
                out[_module_name(path)] = path
    return out


def _imports(path, modules):
    """mmscalenet modules ``path`` imports anywhere in it (module level or inside functions)."""
    name = _module_name(path)
    package = name if path.endswith('__init__.py') else name.rsplit('.', 1)[0]
    found = set()
    for node in ast.walk(ast.parse(open(path).read(), path)):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ''
            if node.level:
                parts = package.split('.')
                parts = parts[:len(parts) - node.level + 1]
                base = '.'.join(parts + ([node.module] if node.module else []))
            # ``from X import y``: y is the module X.y when there is one, else a name in X
            targets = [f'{base}.{a.name}' if f'{base}.{a.name}' in modules else base for a in node.names]
        else:
            continue
        for target in targets:
            while target and target not in modules:   # ``import mmscalenet.a.b`` names the file a/b.py
                target = target.rsplit('.', 1)[0] if '.' in target else ''
            if target.startswith('mmscalenet') and target != name:
                found.add(target)
    return found


def _graph():
    modules = _modules()
    return {name: _imports(path, modules) for name, path in modules.items()}


def test_the_graph_is_drawn_from_real_imports():
    """The drawing itself: lazy imports count, relative imports resolve, ``from . import x`` names module x."""
    graph = _graph()
    assert 'mmscalenet.checkpoint.meta' in graph['mmscalenet.checkpoint.load']         # module level, relative
    assert 'mmscalenet.models.vit' in graph['mmscalenet.checkpoint.meta']               # into another package
    assert 'mmscalenet.checkpoint.safe_globals' in graph['mmscalenet.checkpoint.io']    # a lazy import
    assert 'mmscalenet.registry' in graph['mmscalenet']                                 # from . import registry


def test_models_never_import_the_checkpoint_package():
    """One-way dependency: checkpoint -> models. The backbones get their loader from ``mmscalenet/__init__.py``."""
    import mmscalenet
    from mmscalenet.checkpoint import load_backbone
    from mmscalenet.models import ScaleNetSwin, ScaleNetViT
    graph = _graph()
    offenders = {name: sorted(t for t in targets if t.startswith('mmscalenet.checkpoint'))
                 for name, targets in graph.items() if name.startswith('mmscalenet.models')}
    offenders = {k: v for k, v in offenders.items() if v and f'{k.rsplit(".", 1)[1]}.py'
                 not in FACES_CALLING_THE_CHECKPOINT_PACKAGE}
    assert offenders == {}
    for face in FACES_CALLING_THE_CHECKPOINT_PACKAGE:   # the list holds only files that still need it
        assert any(t.startswith('mmscalenet.checkpoint') for t in graph[f'mmscalenet.models.{face[:-3]}']), face
    assert mmscalenet.__name__ == 'mmscalenet'
    assert ScaleNetViT.pretrained_loader is load_backbone and ScaleNetSwin.pretrained_loader is load_backbone


def _cycles(graph):
    """Every elementary cycle found by depth-first search, each as the list of modules along it."""
    found, state, stack = [], {}, []

    def visit(node):
        state[node] = 'open'
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 'open':
                found.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 'done'

    for node in sorted(graph):
        if node not in state:
            visit(node)
    return found


def test_no_import_cycle_in_the_package():
    assert _cycles(_graph()) == []


@pytest.mark.parametrize('graph, cycle', [({'a': {'b'}, 'b': {'a'}}, ['a', 'b', 'a']),
                                          ({'a': {'b'}, 'b': {'c'}, 'c': set()}, None)])
def test_the_cycle_search_finds_a_circle(graph, cycle):
    assert _cycles(graph) == ([cycle] if cycle else [])
