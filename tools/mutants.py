"""The mutants of a module: small, plausible bugs planted one at a time in its syntax tree (our own operators).

Comparisons flipped or loosened (``<`` and ``<=``, ``==`` and ``!=``, ``in`` and ``not in``), boolean operators swapped,
arithmetic operators swapped, constants nudged, conditions negated, return values dropped: each mutant names where
it is and what it changed, and compiles to the code object the runner installs in place of the module's own.
"""

from __future__ import annotations

import ast
import dataclasses
from types import CodeType

_COMPARE_SWAPS: dict[type[ast.cmpop], type[ast.cmpop]] = {
    ast.Lt: ast.LtE, ast.LtE: ast.Lt, ast.Gt: ast.GtE, ast.GtE: ast.Gt, ast.Eq: ast.NotEq, ast.NotEq: ast.Eq,
    ast.In: ast.NotIn, ast.NotIn: ast.In, ast.Is: ast.IsNot, ast.IsNot: ast.Is,
}
_BINOP_SWAPS: dict[type[ast.operator], type[ast.operator]] = {
    ast.Add: ast.Sub, ast.Sub: ast.Add, ast.Mult: ast.Div, ast.Div: ast.Mult, ast.FloorDiv: ast.Mult,
}
_SYMBOLS = {ast.Lt: "<", ast.LtE: "<=", ast.Gt: ">", ast.GtE: ">=", ast.Eq: "==", ast.NotEq: "!=", ast.In: "in",
            ast.NotIn: "not in", ast.Is: "is", ast.IsNot: "is not", ast.Add: "+", ast.Sub: "-", ast.Mult: "*",
            ast.Div: "/", ast.FloorDiv: "//", ast.And: "and", ast.Or: "or"}


@dataclasses.dataclass(frozen=True, slots=True)
class Mutant:
    """One planted bug: ``key`` names it stably (function, operator, original code) for the equivalents list."""

    module: str
    index: int  # the n-th mutation point of the module, in source order
    line: int
    function: str
    operator: str
    original: str

    @property
    def key(self) -> str:
        return f"{self.function}: {self.operator}: {self.original}"


@dataclasses.dataclass(frozen=True, slots=True)
class Outcome:
    mutant: Mutant
    status: str  # "killed" | "survived" | "timeout" | "skipped"
    seconds: float


# --- finding mutation points ------------------------------------------------------------------------------------------


def _is_docstring(node: ast.AST, parent: ast.AST | None) -> bool:
    return (isinstance(parent, ast.Expr) and isinstance(node, ast.Constant) and isinstance(node.value, str))


class _Points(ast.NodeVisitor):
    """Walks a module in source order and lists (node, operator, description) for every mutation point."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.lines = source.splitlines()
        self.points: list[tuple[ast.AST, str, str, str]] = []  # node, operator id, function, original text
        self._function: list[str] = []

    def _skip_line(self, node: ast.AST) -> bool:
        line = self.lines[getattr(node, "lineno", 1) - 1]
        return "pragma: no mutate" in line

    def _add(self, node: ast.AST, operator: str, text: str | None = None) -> None:
        if self._skip_line(node):
            return
        text = text or ast.get_source_segment(self.source, node) or ast.unparse(node)
        self.points.append((node, operator, ".".join(self._function) or "<module>", " ".join(text.split())[:80]))

    # Annotations, decorators' arguments, f-strings and __all__ carry no behaviour worth mutating.
    def visit_FunctionDef(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        self._function.append(node.name)
        for statement in node.body:
            self.visit(statement)
        for default in [*node.args.defaults, *node.args.kw_defaults]:
            if default is not None:
                self.visit(default)
        self._function.pop()

    visit_AsyncFunctionDef = visit_FunctionDef  # noqa: N815 (the visitor's naming)

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        self._function.append(node.name)
        for statement in node.body:
            self.visit(statement)
        self._function.pop()

    def visit_AnnAssign(self, node: ast.AnnAssign) -> None:
        if node.value is not None:
            self.visit(node.value)

    def visit_Assign(self, node: ast.Assign) -> None:
        if any(isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets):
            return
        self.generic_visit(node)

    def visit_JoinedStr(self, node: ast.JoinedStr) -> None:
        return

    def visit_If(self, node: ast.If) -> None:
        if isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            return
        self._add(node.test, "negate-if")
        self.generic_visit(node)

    def visit_Compare(self, node: ast.Compare) -> None:
        for i, op in enumerate(node.ops):
            if type(op) in _COMPARE_SWAPS:
                self._add(node, f"compare#{i}:{_SYMBOLS[type(op)]}->{_SYMBOLS[_COMPARE_SWAPS[type(op)]]}")
        self.generic_visit(node)

    def visit_BoolOp(self, node: ast.BoolOp) -> None:
        self._add(node, "and->or" if isinstance(node.op, ast.And) else "or->and")
        self.generic_visit(node)

    def visit_UnaryOp(self, node: ast.UnaryOp) -> None:
        if isinstance(node.op, ast.Not):
            self._add(node, "drop-not")
        self.generic_visit(node)

    def visit_BinOp(self, node: ast.BinOp) -> None:
        if type(node.op) in _BINOP_SWAPS and not (isinstance(node.op, ast.Mod)):
            self._add(node, f"binop:{_SYMBOLS[type(node.op)]}->{_SYMBOLS[_BINOP_SWAPS[type(node.op)]]}")
        self.generic_visit(node)

    def visit_Dict(self, node: ast.Dict) -> None:
        # A constant value is named with its key ("verify_exp": False), so that the mutant's name says which one.
        for key, value in zip(node.keys, node.values, strict=True):
            if key is not None:
                self.visit(key)
            if isinstance(key, ast.Constant) and isinstance(value, ast.Constant):
                self._constant(value, f"{key.value!r}: {value.value!r}")
            else:
                self.visit(value)

    def visit_keyword(self, node: ast.keyword) -> None:
        if node.arg is not None and isinstance(node.value, ast.Constant):
            self._constant(node.value, f"{node.arg}={node.value.value!r}")
        else:
            self.visit(node.value)

    def visit_Constant(self, node: ast.Constant) -> None:
        self._constant(node)

    def _constant(self, node: ast.Constant, text: str | None = None) -> None:
        value = node.value
        if isinstance(value, bool):
            self._add(node, "flip-bool", text)
        elif isinstance(value, (int, float)):
            self._add(node, "const+1", text)
            self._add(node, "const-1", text)

    def visit_Return(self, node: ast.Return) -> None:
        if node.value is not None and not (isinstance(node.value, ast.Constant) and node.value.value is None):
            self._add(node, "return-None")
        self.generic_visit(node)

    def visit_Expr(self, node: ast.Expr) -> None:
        if _is_docstring(node.value, node):
            return
        self.generic_visit(node)


class _Apply(ast.NodeTransformer):
    """Applies the mutation at one node (found by identity in a fresh parse)."""

    def __init__(self, target: ast.AST, operator: str) -> None:
        self.target = target
        self.operator = operator

    def visit(self, node: ast.AST) -> ast.AST:
        if node is not self.target:
            return super().visit(node)
        op = self.operator
        if op == "negate-if":
            assert isinstance(node, ast.expr)
            return ast.copy_location(ast.UnaryOp(op=ast.Not(), operand=node), node)
        if op.startswith("compare#"):
            assert isinstance(node, ast.Compare)
            i = int(op[len("compare#"):op.index(":")])
            ops = list(node.ops)
            ops[i] = _COMPARE_SWAPS[type(ops[i])]()
            node.ops = ops
            return node
        if op in ("and->or", "or->and"):
            assert isinstance(node, ast.BoolOp)
            node.op = ast.Or() if isinstance(node.op, ast.And) else ast.And()
            return node
        if op == "drop-not":
            assert isinstance(node, ast.UnaryOp)
            return node.operand
        if op.startswith("binop:"):
            assert isinstance(node, ast.BinOp)
            node.op = _BINOP_SWAPS[type(node.op)]()
            return node
        if op == "flip-bool":
            assert isinstance(node, ast.Constant)
            return ast.copy_location(ast.Constant(value=not node.value), node)
        if op in ("const+1", "const-1"):
            assert isinstance(node, ast.Constant)
            return ast.copy_location(ast.Constant(value=node.value + (1 if op == "const+1" else -1)), node)
        if op == "return-None":
            assert isinstance(node, ast.Return)
            return ast.copy_location(ast.Return(value=ast.Constant(value=None)), node)
        raise ValueError(f"unknown mutation operator {op!r}")


def _parse(source: str) -> tuple[ast.Module, _Points]:
    tree = ast.parse(source)
    points = _Points(source)
    points.visit(tree)
    return tree, points


def mutants_of(module: str, source: str) -> list[Mutant]:
    """Every mutant of ``source`` (the file ``module``), in source order."""
    _, points = _parse(source)
    mutants = []
    seen: dict[tuple[str, str, str], int] = {}
    for i, (node, operator, function, original) in enumerate(points.points):
        # The same change to the same text twice in one function (four ``False`` in one dict) gets #2, #3 ...
        n = seen[(function, operator, original)] = seen.get((function, operator, original), 0) + 1
        text = original if n == 1 else f"{original} #{n}"
        mutants.append(Mutant(module, i, getattr(node, "lineno", 0), function, operator, text))
    return mutants


def mutated_code(mutant: Mutant, source: str, filename: str) -> CodeType:
    """The compiled module with exactly ``mutant`` applied."""
    tree, points = _parse(source)
    node, operator, _, _ = points.points[mutant.index]
    tree = _Apply(node, operator).visit(tree)
    ast.fix_missing_locations(tree)
    return compile(tree, filename, "exec")
