"""Safe, exact evaluation of card-game formulas, and an exhaustive solver.

In the formula games (Points24: four cards, reach 24 with ``+ - * /`` and parentheses;
EZPoints: two cards, reach 12 with ``+ *``) an agent builds a formula one element at a
time. The formula is evaluated here over exact rationals (:class:`fractions.Fraction`) by
a small hand-written parser: nothing is ever passed to ``eval``/``exec``, and two numbers
next to each other are an error instead of being glued together (``["2", "4"]`` is not 24).

Grammar (no unary minus, no implicit multiplication, no exponent)::

    expr   := term   (("+" | "-") term)*
    term   := factor (("*" | "/") factor)*
    factor := NUMBER | "(" expr ")"
    NUMBER := one or more ASCII digits, at most MAX_NUMBER_DIGITS of them

``*`` and ``/`` bind tighter than ``+`` and ``-``; operators of equal precedence associate
to the left (``8-4-2`` is 2, ``8/4/2`` is 1).

A formula is either a string (whitespace is ignored and a run of digits is one number,
so ``"24"`` is twenty-four while ``"2 4"`` is two adjacent numbers) or a sequence of
elements, each one number, one operator or one parenthesis.

The solver enumerates every binary expression tree over a multiset of numbers, so an
empty answer is a proof that the target cannot be reached.
"""

from __future__ import annotations

import operator as _operator
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache
from itertools import islice

__all__ = [
    "ALL_OPERATORS",
    "MAX_ELEMENTS",
    "MAX_FORMULA_CHARS",
    "MAX_NESTING",
    "MAX_NUMBER_DIGITS",
    "Evaluation",
    "FormulaError",
    "evaluate",
    "is_solvable",
    "solutions",
    "solve",
    "tokenize",
]

ALL_OPERATORS = "+-*/"
MAX_FORMULA_CHARS = 1000  # longer strings are rejected before they are even tokenized
MAX_ELEMENTS = 256  # longer element sequences are rejected: keeps the work per call tiny
MAX_NESTING = 32  # deeper parentheses are rejected: no answer needs more than a few levels
MAX_NUMBER_DIGITS = 6  # cards are 1..10; bigger literals only invite giant-number blowups

_PARENS = "()"
_PRECEDENCE = {"+": 1, "-": 1, "*": 2, "/": 2}
_ATOM = 3  # precedence of a number or a parenthesised group: never needs parentheses
_SHOWN_CHARS = 20  # how much of an offending element a reason quotes


class FormulaError(ValueError):
    """Raised by :func:`tokenize` on text that is not made of formula characters."""


@dataclass(frozen=True)
class Evaluation:
    """The outcome of :func:`evaluate`: a value, or the reason there is none.

    ``numbers`` lists the number literals in order of appearance, even for an invalid
    formula (as far as tokenizing got), so a game can compare them against the cards.
    """

    value: Fraction | None
    reason: str
    numbers: tuple[int, ...]

    @property
    def valid(self) -> bool:
        """True when the formula has a value (and therefore ``reason`` is empty)."""
        return self.value is not None


# --------------------------------------------------------------------------- tokens


def _is_number(element: str) -> bool:
    """ASCII digits only: ``str.isdigit`` alone would also accept '²' or '٣'."""
    return element.isascii() and element.isdigit()


def _is_operator(element: str) -> bool:
    return len(element) == 1 and element in ALL_OPERATORS


def _is_paren(element: str) -> bool:
    return len(element) == 1 and element in _PARENS


def _show(text: str) -> str:
    """Quote a piece of user text for a reason, shortened so reasons stay one line."""
    if len(text) > _SHOWN_CHARS:
        text = text[:_SHOWN_CHARS] + "..."
    return repr(text)


def _check_number(literal: str) -> str:
    """The reason a digit run is unusable as a number, or "" if it is fine."""
    if len(literal) > MAX_NUMBER_DIGITS:
        return f"Number {_show(literal)} has too many digits (at most {MAX_NUMBER_DIGITS})."
    return ""


def _scan(formula: str) -> tuple[list[str], str]:
    """Split a string into elements; return them with the first problem ("" if none).

    On a problem the elements found before it are still returned, so the caller can
    report the numbers seen so far.
    """
    tokens: list[str] = []
    i = 0
    while i < len(formula):
        char = formula[i]
        if char.isspace():
            i += 1
        elif "0" <= char <= "9":
            start = i
            while i < len(formula) and "0" <= formula[i] <= "9":
                i += 1
            tokens.append(formula[start:i])
        elif char in ALL_OPERATORS or char in _PARENS:
            tokens.append(char)
            i += 1
        else:
            return tokens, f"Unexpected character {char!r} at position {i}."
    return tokens, ""


def tokenize(formula: str) -> list[str]:
    """Split a formula string into elements, one per number, operator or parenthesis.

    A run of digits is one number (``"24"`` is twenty-four) and whitespace only separates
    (``"2 4"`` is two numbers). Anything else raises :class:`FormulaError`, so a caller
    can never smuggle names, quotes or ``**`` past this point.
    """
    if not isinstance(formula, str):
        raise FormulaError(f"A formula must be a string, not {type(formula).__name__}.")
    tokens, problem = _scan(formula)
    if problem:
        raise FormulaError(problem)
    return tokens


def _elements_from_string(formula: str) -> tuple[list[str], str]:
    """Elements of a string formula plus the first problem, with the length bounds applied."""
    if len(formula) > MAX_FORMULA_CHARS:
        return [], f"The formula is too long (more than {MAX_FORMULA_CHARS} characters)."
    tokens, problem = _scan(formula)
    if not problem and len(tokens) > MAX_ELEMENTS:
        return [], f"The formula is too long (more than {MAX_ELEMENTS} elements)."
    for position, token in enumerate(tokens):
        if _is_number(token) and _check_number(token):
            return tokens[:position], _check_number(token)
    return tokens, problem


def _elements_from_sequence(formula: object) -> tuple[list[str], str]:
    """Elements of a sequence formula plus the first problem; never trusts the input.

    Reads at most one element past the bound, so even an endless iterator terminates.
    """
    try:
        raw = list(islice(iter(formula), MAX_ELEMENTS + 1))  # type: ignore[call-overload]
    except Exception:  # noqa: BLE001 - foreign __iter__/__next__ may do anything; report, don't raise
        return [], "The formula is neither a string nor a sequence of elements."
    if len(raw) > MAX_ELEMENTS:
        return [], f"The formula is too long (more than {MAX_ELEMENTS} elements)."
    elements: list[str] = []
    for position, element in enumerate(raw):
        if not isinstance(element, str):
            kind = type(element).__name__
            return elements, f"Element {position} is a {kind}, not a string."
        if _is_number(element):
            if _check_number(element):
                return elements, _check_number(element)
        elif not (_is_operator(element) or _is_paren(element)):
            return elements, f"Unexpected element {_show(element)} at position {position}."
        elements.append(element)
    return elements, ""


def _numbers_of(elements: Sequence[str]) -> tuple[int, ...]:
    """The number literals among already-checked elements (each short enough for int())."""
    return tuple(int(element) for element in elements if _is_number(element))


# --------------------------------------------------------------------------- checks


def _allowed_operators(operators: object) -> tuple[frozenset[str], str]:
    """The set of usable operators, or a reason when ``operators`` is malformed."""
    if not isinstance(operators, str) or any(c not in ALL_OPERATORS for c in operators):
        return frozenset(), f"The allowed operators must be a string made of {ALL_OPERATORS!r}."
    return frozenset(operators), ""


def _card_counts(cards: object) -> tuple[Counter[int] | None, str]:
    """The cards as a multiset of ints (numpy ints welcome), or a reason when malformed."""
    try:
        counts = Counter(_operator.index(card) for card in cards)  # type: ignore[attr-defined]
    except Exception:  # noqa: BLE001 - not iterable, not integers, or a misbehaving iterator
        return None, "The cards must be a sequence of integers."
    return counts, ""


def _operand_problem(token: str, previous: str | None) -> str:
    """Why an operator cannot stand where an operand was expected."""
    if previous is None:
        return f"Operator {token!r} is missing its left operand (the formula starts with it)."
    if previous == "(":
        return f"Operator {token!r} is missing its left operand (it follows '(')."
    return f"Two operators in a row ({previous!r} then {token!r}): an operand is missing."


def _adjacency_problem(token: str, previous: str) -> str:
    """Why an operand cannot directly follow a number or ')'."""
    if _is_number(token) and _is_number(previous):
        return f"Two numbers are next to each other ({previous} and {token}): an operator is missing between them."
    return f"An operator is missing between {previous!r} and {token!r}."


def _closing_problem(previous: str | None, depth: int) -> str:
    """Why a ')' cannot stand where it is, or "" if it can."""
    if depth == 0:
        return "Unbalanced parentheses: a ')' has no matching '('."
    if previous == "(":
        return "Empty parentheses '()': an operand is missing."
    if previous is not None and _is_operator(previous):
        return f"Operator {previous!r} is missing its right operand (it is followed by ')')."
    return ""


def _ending_problem(previous: str, depth: int) -> str:
    """What is wrong with how the formula ends, or "" if nothing."""
    if _is_operator(previous):
        return f"Operator {previous!r} is missing its right operand (the formula ends with it)."
    if depth > 0:
        return f"Unbalanced parentheses: {depth} '(' never closed."
    return ""


def _syntax_problem(elements: Sequence[str], allowed: frozenset[str]) -> str:
    """Check the grammar with a left-to-right state machine; return the first problem.

    Tracking only "is an operand expected next?" and the nesting depth is enough for the
    grammar above, and yields a specific reason for every way a formula can be malformed.
    """
    expect_operand = True
    depth = 0
    previous: str | None = None
    for token in elements:
        problem = ""
        if _is_number(token) or token == "(":
            if not expect_operand:
                problem = _adjacency_problem(token, previous or "")
            elif token == "(":
                depth += 1
                if depth > MAX_NESTING:
                    problem = f"Parentheses are nested too deeply (more than {MAX_NESTING})."
            expect_operand = token == "("
        elif token == ")":
            problem = _closing_problem(previous, depth)
            depth -= 1
            expect_operand = False
        else:
            if token not in allowed:
                shown = " ".join(sorted(allowed, key=ALL_OPERATORS.index)) or "none"
                problem = f"Operator {token!r} is not allowed in this game (allowed: {shown})."
            elif expect_operand:
                problem = _operand_problem(token, previous)
            expect_operand = True
        if problem:
            return problem
        previous = token
    if previous is None:
        return "The formula is empty."
    return _ending_problem(previous, depth)


def _cards_problem(numbers: Sequence[int], cards: Counter[int]) -> str:
    """The first number that the cards cannot supply, or "" when they cover them all.

    Using fewer cards than dealt is fine here; whether all must be used is the game's rule.
    """
    used: Counter[int] = Counter()
    for number in numbers:
        used[number] += 1
        if cards[number] == 0:
            return f"Number {number} is not on the cards."
        if used[number] > cards[number]:
            return (
                f"Number {number} is used more times ({used[number]}) than it appears on the cards ({cards[number]})."
            )
    return ""


# --------------------------------------------------------------------------- evaluation


def _apply(op: str, left: Fraction, right: Fraction) -> Fraction | None:
    """One binary operation in exact arithmetic; None on division by zero."""
    if op == "+":
        return left + right
    if op == "-":
        return left - right
    if op == "*":
        return left * right
    if right == 0:
        return None
    return left / right


def _reduce_top(values: list[Fraction], ops: list[str]) -> bool:
    """Apply the operator on top of the stack to the two top values; False on x/0."""
    right = values.pop()
    left = values.pop()
    result = _apply(ops.pop(), left, right)
    if result is None:
        return False
    values.append(result)
    return True


def _compute(elements: Sequence[str]) -> Fraction | None:
    """Value of a grammatically valid formula (shunting-yard); None on division by zero.

    Iterative on purpose: deep nesting can never raise RecursionError. Every
    sub-expression is evaluated, so a zero divisor anywhere is always caught.
    """
    values: list[Fraction] = []
    ops: list[str] = []
    for token in elements:
        if _is_number(token):
            values.append(Fraction(int(token)))
        elif token == "(":
            ops.append(token)
        elif token == ")":
            while ops[-1] != "(":
                if not _reduce_top(values, ops):
                    return None
            ops.pop()
        else:
            while ops and ops[-1] != "(" and _PRECEDENCE[ops[-1]] >= _PRECEDENCE[token]:
                if not _reduce_top(values, ops):
                    return None
            ops.append(token)
    while ops:
        if not _reduce_top(values, ops):
            return None
    return values[0]


def _invalid(reason: str, numbers: tuple[int, ...]) -> Evaluation:
    return Evaluation(value=None, reason=reason, numbers=numbers)


def evaluate(
    formula: str | Sequence[str],
    cards: Sequence[int] | None = None,
    operators: str = ALL_OPERATORS,
) -> Evaluation:
    """Evaluate a formula exactly, or explain in one sentence why it has no value.

    Never raises, whatever it is given: model output is untrusted, and an invalid move
    must become a reason the agent can be shown, not a crash. ``cards`` (a multiset)
    restricts which numbers may appear and how often; ``operators`` restricts the
    operators (EZPoints uses ``"+*"``).
    """
    if isinstance(formula, str):
        elements, problem = _elements_from_string(formula)
    else:
        elements, problem = _elements_from_sequence(formula)
    numbers = _numbers_of(elements)
    if problem:
        return _invalid(problem, numbers)
    allowed, problem = _allowed_operators(operators)
    if problem:
        return _invalid(problem, numbers)
    problem = _syntax_problem(elements, allowed)
    if problem:
        return _invalid(problem, numbers)
    if cards is not None:
        counts, problem = _card_counts(cards)
        if counts is not None:
            problem = _cards_problem(numbers, counts)
        if problem:
            return _invalid(problem, numbers)
    value = _compute(elements)
    if value is None:
        return _invalid("Division by zero: a divisor evaluates to 0.", numbers)
    return Evaluation(value=value, reason="", numbers=numbers)


# --------------------------------------------------------------------------- solver
#
# Every binary expression tree over a multiset splits, at its root, into a left and a
# right tree over two complementary non-empty sub-multisets. So the set of values a
# multiset can reach is built bottom-up over sub-multisets (cached), and the formulas
# reaching the target are recovered top-down by asking, for each split and operator,
# which left value pairs with which right value. This visits exactly the trees that
# "pick two items, combine, repeat" visits, with far less repeated work.

_Multiset = tuple[int, ...]  # always sorted, so equal multisets share cache entries
_Node = tuple[tuple[str, ...], int]  # printed elements, precedence of the root
_ANY = object()  # "every value on the other side works" (e.g. 0 * x == 0)


@lru_cache(maxsize=4096)
def _splits(multiset: _Multiset) -> tuple[tuple[_Multiset, _Multiset], ...]:
    """All distinct (left, right) ways to cut a multiset into two non-empty parts."""
    size = len(multiset)
    seen: dict[tuple[_Multiset, _Multiset], None] = {}
    for mask in range(1, (1 << size) - 1):
        left = tuple(multiset[i] for i in range(size) if mask >> i & 1)
        right = tuple(multiset[i] for i in range(size) if not mask >> i & 1)
        seen[(left, right)] = None
    return tuple(seen)


def _combine(a: Fraction, b: Fraction, ops: str) -> Iterator[Fraction]:
    """Every value one operator makes of a and b, in either order; skips division by 0."""
    if "+" in ops:
        yield a + b
    if "-" in ops:
        yield a - b
        yield b - a
    if "*" in ops:
        yield a * b
    if "/" in ops:
        if b:
            yield a / b
        if a:
            yield b / a


@lru_cache(maxsize=4096)
def _values(multiset: _Multiset, ops: str) -> frozenset[Fraction]:
    """Every value some expression tree over exactly these numbers evaluates to."""
    if len(multiset) == 1:
        return frozenset({Fraction(multiset[0])})
    reached: set[Fraction] = set()
    for left, right in _splits(multiset):
        if left <= right:  # the mirrored split adds nothing: _combine tries both orders
            for a in _values(left, ops):
                for b in _values(right, ops):
                    reached.update(_combine(a, b, ops))
    return frozenset(reached)


def _right_for(left: Fraction, op: str, target: Fraction) -> object:
    """The right operand r with ``left op r == target``: a value, _ANY, or None."""
    if op == "+":
        return target - left
    if op == "-":
        return left - target
    if op == "*":
        if left:
            return target / left
        return _ANY if target == 0 else None
    if target:
        return left / target if left else None
    return _ANY if left == 0 else None  # 0 / r == 0 for every non-zero r


def _left_for(right: Fraction, op: str, target: Fraction) -> object:
    """The left operand l with ``l op right == target``: a value, _ANY, or None."""
    if op == "+":
        return target - right
    if op == "-":
        return target + right
    if op == "*":
        if right:
            return target / right
        return _ANY if target == 0 else None
    return target * right if right else None


def _operand_pairs(
    left: _Multiset, right: _Multiset, op: str, target: Fraction, ops: str
) -> Iterator[tuple[Fraction, Fraction]]:
    """Every (a, b), a reachable by ``left`` and b by ``right``, with ``a op b == target``.

    Walks the smaller value set and solves for the partner, instead of trying all pairs.
    """
    lefts, rights = _values(left, ops), _values(right, ops)
    if len(lefts) <= len(rights):
        for a in lefts:
            need = _right_for(a, op, target)
            if need is _ANY:
                yield from ((a, b) for b in rights if op != "/" or b)
            elif need is not None and need in rights:
                yield a, need  # type: ignore[misc]
    else:
        for b in rights:
            need = _left_for(b, op, target)
            if need is _ANY:
                yield from ((a, b) for a in lefts)
            elif need is not None and need in lefts:
                yield need, b  # type: ignore[misc]


def _reachable(multiset: _Multiset, target: Fraction, ops: str) -> bool:
    """Whether some tree over the multiset hits the target, without printing any."""
    if len(multiset) == 1:
        return Fraction(multiset[0]) == target
    return any(
        next(_operand_pairs(left, right, op, target, ops), None) is not None
        for left, right in _splits(multiset)
        for op in ops
    )


def _join(left: _Node, op: str, right: _Node) -> _Node:
    """Print ``left op right`` with the fewest parentheses that keep the tree's meaning.

    A child is wrapped when it binds looser than ``op``, or when it is the right child
    of ``-`` or ``/`` at equal precedence (``a-(b-c)`` differs from ``a-b-c``).
    """
    precedence = _PRECEDENCE[op]
    left_elements, left_precedence = left
    right_elements, right_precedence = right
    if left_precedence < precedence:
        left_elements = ("(", *left_elements, ")")
    if right_precedence < precedence or (right_precedence == precedence and op in "-/"):
        right_elements = ("(", *right_elements, ")")
    return (*left_elements, op, *right_elements), precedence


def _formulas(
    multiset: _Multiset,
    target: Fraction,
    ops: str,
    memo: dict[tuple[_Multiset, Fraction], frozenset[_Node]],
) -> frozenset[_Node]:
    """Every distinct printed formula over exactly these numbers that equals target."""
    key = (multiset, target)
    if key not in memo:
        found: set[_Node] = set()
        if len(multiset) == 1:
            if Fraction(multiset[0]) == target:
                found.add(((str(multiset[0]),), _ATOM))
        else:
            for left, right in _splits(multiset):
                for op in ops:
                    for a, b in _operand_pairs(left, right, op, target, ops):
                        for left_node in _formulas(left, a, ops, memo):
                            for right_node in _formulas(right, b, ops, memo):
                                found.add(_join(left_node, op, right_node))
        memo[key] = frozenset(found)
    return memo[key]


def _normalize(numbers: Sequence[int], target: int, operators: str) -> tuple[_Multiset, Fraction, str]:
    """Canonical cache key: sorted numbers, exact target, operators in a fixed order."""
    if not isinstance(operators, str) or any(c not in ALL_OPERATORS for c in operators):
        raise ValueError(f"operators must be a string made of {ALL_OPERATORS!r}")
    multiset = tuple(sorted(_operator.index(number) for number in numbers))
    if multiset and multiset[0] < 0:
        raise ValueError("numbers must be >= 0: a formula has no unary minus")
    ops = "".join(op for op in ALL_OPERATORS if op in operators)
    return multiset, Fraction(target), ops


@lru_cache(maxsize=2048)
def _cached_solutions(multiset: _Multiset, target: Fraction, ops: str) -> tuple[tuple[str, ...], ...]:
    if not multiset or not _reachable(multiset, target, ops):
        return ()
    nodes = _formulas(multiset, target, ops, {})
    return tuple(sorted((elements for elements, _ in nodes), key=lambda e: (len(e), e)))


def solutions(numbers: Sequence[int], target: int, operators: str = ALL_OPERATORS) -> tuple[tuple[str, ...], ...]:
    """Every distinct formula using each number exactly once that equals ``target``.

    Formulas are element tuples printed with minimal parentheses; both operand orders of
    ``+`` and ``*`` count as distinct formulas. Sorted by (length, elements), so the first
    is a shortest one. All binary expression trees are covered, so ``()`` proves the
    target unreachable. Cached, because games ask at every step. Cost grows steeply
    with the count of numbers: instant for 4, about a second for 6.
    """
    return _cached_solutions(*_normalize(numbers, target, operators))


def solve(numbers: Sequence[int], target: int, operators: str = ALL_OPERATORS) -> tuple[str, ...] | None:
    """A shortest formula reaching ``target`` (the first of :func:`solutions`), or None."""
    found = solutions(numbers, target, operators)
    return found[0] if found else None


@lru_cache(maxsize=4096)
def _cached_solvable(multiset: _Multiset, target: Fraction, ops: str) -> bool:
    return bool(multiset) and _reachable(multiset, target, ops)


def is_solvable(numbers: Sequence[int], target: int, operators: str = ALL_OPERATORS) -> bool:
    """Whether :func:`solutions` is non-empty, decided without printing any formula."""
    return _cached_solvable(*_normalize(numbers, target, operators))
