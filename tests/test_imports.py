"""The package's layout keeps its arrows one way: no import cycle among minillm's modules at
module level, no module named like a standard-library one, and no op module that shadows
a builtin (``sum``, ``max``…, as a function, parameter or variable) so that its own code
must reach for ``builtins``."""
import ast
import builtins
import pathlib
import sys

PACKAGE = pathlib.Path(__file__).parent.parent / "minillm"


def _module_name(path):
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules():
    return {_module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def _module_level_imports(tree):
    """Import statements that run when the module is imported: everywhere but inside a
    function body (a class body or an ``if``/``try`` at module level runs at import)."""
    found, todo = [], list(tree.body)
    while todo:
        node = todo.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            continue
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            found.append(node)
        todo.extend(ast.iter_child_nodes(node))
    return found


def _edges(name, path, modules):
    """The minillm modules that ``name`` imports at module level."""
    is_package = path.name == "__init__.py"
    targets = set()
    for node in _module_level_imports(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
            continue
        if node.level:
            base = name.split(".")
            base = base[:len(base) - node.level + (1 if is_package else 0)]
            origin = ".".join(base + ([node.module] if node.module else []))
        else:
            origin = node.module
        for alias in node.names:  # `from package import submodule` or a name defined in `origin`
            submodule = f"{origin}.{alias.name}"
            targets.add(submodule if submodule in modules else origin)
    return {t for t in targets if t in modules and t != name}


def _import_graph():
    modules = _modules()
    return {name: _edges(name, path, modules) for name, path in modules.items()}


def _find_cycle(graph):
    """One cycle as a list of modules (first == last), or None. Iterative three-colour DFS."""
    state = {}  # absent: unvisited, 1: on the current path, 2: done
    for start in sorted(graph):
        if start in state:
            continue
        path, iters = [start], [iter(sorted(graph[start]))]
        state[start] = 1
        while path:
            nxt = next(iters[-1], None)
            if nxt is None:
                state[path.pop()] = 2
                iters.pop()
            elif state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            elif nxt not in state:
                state[nxt] = 1
                path.append(nxt)
                iters.append(iter(sorted(graph[nxt])))
    return None


def test_the_cycle_finder_finds_a_cycle():
    assert _find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert _find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


def test_relative_imports_resolve_to_modules():
    graph = _import_graph()
    assert "minillm.tensor" in graph["minillm.ops.core"]  # from ..tensor import Tensor
    assert "minillm.backends" in graph["minillm.functional"]  # from . import backends


def test_no_import_cycle_among_minillm_modules():
    """Imports inside functions are left out: they run later, when every module exists.
    The one that matters most, tensor <-> ops, goes one way: ops import tensor, and
    Tensor's operators reach the ops through a name that minillm/ops binds (tensor.py)."""
    graph = _import_graph()
    print(f"{len(graph)} modules, {sum(map(len, graph.values()))} module-level imports among them")
    cycle = _find_cycle(graph)
    assert cycle is None, "module-level import cycle: " + " -> ".join(cycle)


def test_no_module_shadows_the_standard_library():
    clashes = sorted(name for name in _modules() if name.split(".")[-1] in sys.stdlib_module_names)
    assert not clashes, f"modules named like standard-library ones: {clashes}"


def test_op_modules_do_not_shadow_builtins():
    for path in sorted((PACKAGE / "ops").glob("*.py")):
        tree = ast.parse(path.read_text())
        defined = set()  # functions, classes, parameters and variables, at any depth
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
                defined.add(node.name)
            elif isinstance(node, ast.arg):
                defined.add(node.arg)
            elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                defined.add(node.id)
        shadowed = sorted(name for name in defined if hasattr(builtins, name))
        assert not shadowed, f"{path.name} defines builtins' names: {shadowed}"
        reaches = any(isinstance(node, ast.Name) and node.id == "builtins" for node in ast.walk(tree))
        assert not reaches, f"{path.name} reaches for the builtins module"
