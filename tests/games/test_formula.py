"""Tests for vlmrl.games.formula: exact evaluation, specific errors, the exhaustive solver.

The solver is checked against independent brute forces written here (all permutations
times all parenthesisations, in plain Fraction arithmetic), and the evaluator against an
independent recursive-descent reference, so neither is trusted on its own word.
"""

from __future__ import annotations

import ast
import builtins
import inspect
import itertools
import random
import re
import time
from collections.abc import Iterator, Sequence
from fractions import Fraction
from functools import cache

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vlmrl.games import formula as formula_module
from vlmrl.games.formula import (
    MAX_NESTING,
    MAX_NUMBER_DIGITS,
    Evaluation,
    FormulaError,
    evaluate,
    is_solvable,
    solutions,
    solve,
    tokenize,
)

# ------------------------------------------------------------------ independent references


def ref_apply(op: str, a: Fraction | None, b: Fraction | None) -> Fraction | None:
    """Plain arithmetic with None for 'no value' (division by zero anywhere below)."""
    if a is None or b is None:
        return None
    if op == "+":
        return a + b
    if op == "-":
        return a - b
    if op == "*":
        return a * b
    return None if b == 0 else a / b


def ref_evaluate(text: str) -> Fraction | None:
    """Recursive-descent reference over the same grammar (different algorithm from the module)."""
    if re.search(r"[^0-9+\-*/()\s]", text):
        return None
    tokens = re.findall(r"\d+|[-+*/()]", text)
    if not tokens or any(t.isdigit() and len(t) > MAX_NUMBER_DIGITS for t in tokens):
        return None
    pos = 0
    failed = False

    def peek() -> str | None:
        return tokens[pos] if pos < len(tokens) else None

    def expr(depth: int) -> Fraction | None:
        nonlocal pos
        value = term(depth)
        while peek() in ("+", "-"):
            op = tokens[pos]
            pos += 1
            value = ref_apply(op, value, term(depth))
        return value

    def term(depth: int) -> Fraction | None:
        nonlocal pos
        value = factor(depth)
        while peek() in ("*", "/"):
            op = tokens[pos]
            pos += 1
            value = ref_apply(op, value, factor(depth))
        return value

    def factor(depth: int) -> Fraction | None:
        nonlocal pos, failed
        token = peek()
        if token is not None and token.isdigit():
            pos += 1
            return Fraction(int(token))
        if token == "(" and depth < MAX_NESTING:
            pos += 1
            value = expr(depth + 1)
            if peek() != ")":
                failed = True
                return None
            pos += 1
            return value
        failed = True
        return None

    value = expr(0)
    if failed or pos != len(tokens):
        return None
    return value


def tree_value(tree: object) -> Fraction | None:
    if isinstance(tree, int):
        return Fraction(tree)
    left, op, right = tree  # type: ignore[misc]
    return ref_apply(op, tree_value(left), tree_value(right))


def full_parens(tree: object) -> str:
    """Every binary node wrapped in parentheses: unambiguous without any precedence rule."""
    if isinstance(tree, int):
        return str(tree)
    left, op, right = tree  # type: ignore[misc]
    return f"({full_parens(left)}{op}{full_parens(right)})"


PREC = {"+": 1, "-": 1, "*": 2, "/": 2}


def minimal_print(tree: object) -> tuple[tuple[str, ...], int]:
    """The spec's minimal-parentheses rule, written independently of the module."""
    if isinstance(tree, int):
        return (str(tree),), 3
    left, op, right = tree  # type: ignore[misc]
    (le, lp), (re_, rp) = minimal_print(left), minimal_print(right)
    p = PREC[op]
    if lp < p:
        le = ("(", *le, ")")
    if rp < p or (rp == p and op in "-/"):
        re_ = ("(", *re_, ")")
    return (*le, op, *re_), p


def all_trees(leaves: Sequence[int], ops: str) -> Iterator[object]:
    """Every binary tree with these leaves in this left-to-right order."""
    if len(leaves) == 1:
        yield leaves[0]
        return
    for cut in range(1, len(leaves)):
        for left in all_trees(leaves[:cut], ops):
            for right in all_trees(leaves[cut:], ops):
                for op in ops:
                    yield (left, op, right)


def brute_solutions(numbers: Sequence[int], target: int, ops: str) -> set[tuple[str, ...]]:
    """Minimal prints of every tree over every ordering of numbers that hits target."""
    found = set()
    for perm in set(itertools.permutations(numbers)):
        for tree in all_trees(perm, ops):
            if tree_value(tree) == target:
                found.add(minimal_print(tree)[0])
    return found


def _pair_values(a: Fraction, b: Fraction) -> list[Fraction]:
    out = [a + b, a - b, a * b]
    if b:
        out.append(a / b)
    return out


def _pairs(xs: list[Fraction], ys: list[Fraction]) -> list[Fraction]:
    return [v for x in xs for y in ys for v in _pair_values(x, y)]


@cache
def brute_24(cards: tuple[int, ...]) -> bool:
    """Straightforward check: all orderings x the 5 parenthesisations of 4 numbers."""
    for a, b, c, d in set(itertools.permutations(cards)):
        fa, fb, fc, fd = (Fraction(x) for x in (a, b, c, d))
        ab, bc, cd = _pair_values(fa, fb), _pair_values(fb, fc), _pair_values(fc, fd)
        shapes = (
            _pairs(_pairs(ab, [fc]), [fd]),  # ((a b) c) d
            _pairs(_pairs([fa], bc), [fd]),  # (a (b c)) d
            _pairs(ab, cd),  # (a b) (c d)
            _pairs([fa], _pairs(bc, [fd])),  # a ((b c) d)
            _pairs([fa], _pairs([fb], cd)),  # a (b (c d))
        )
        if any(v == 24 for shape in shapes for v in shape):
            return True
    return False


ALL_HANDS = list(itertools.combinations_with_replacement(range(1, 11), 4))

# ------------------------------------------------------------------ evaluation: values


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("8/(3-8/3)", Fraction(24)),
        ("1/3*3", Fraction(1)),
        ("1/3", Fraction(1, 3)),
        ("8-4-2", Fraction(2)),
        ("8/4/2", Fraction(1)),
        ("2+3*4", Fraction(14)),
        ("(2+3)*4", Fraction(20)),
        ("24", Fraction(24)),
        (" 3 * ( 4 + 4 ) ", Fraction(24)),
        ("((((7))))", Fraction(7)),
        ("5*(5-1/5)", Fraction(24)),
        ("0", Fraction(0)),
        ("2-7", Fraction(-5)),
    ],
)
def test_exact_values(text: str, expected: Fraction) -> None:
    result = evaluate(text)
    assert result.valid and result.reason == ""
    assert isinstance(result.value, Fraction) and result.value == expected


def test_element_list_input() -> None:
    result = evaluate(["3", "*", "(", "4", "+", "4", ")"])
    assert result.value == 24 and result.numbers == (3, 4, 4)
    assert evaluate(("10", "+", "2")).value == 12


def test_adjacent_numbers_are_never_concatenated() -> None:
    assert evaluate("24").value == 24
    for bad in (["2", "4"], "2 4"):
        result = evaluate(bad)
        assert not result.valid and result.value is None
        assert "next to each other" in result.reason
        assert result.numbers == (2, 4)


def test_tokenize() -> None:
    assert tokenize("24+ (3*10)") == ["24", "+", "(", "3", "*", "10", ")"]
    assert tokenize("2 4") == ["2", "4"]
    assert tokenize("  ") == []
    for bad in ("2**x", "2^3", "3.5", "２", "eval(1)"):
        with pytest.raises(FormulaError):
            tokenize(bad)
    assert issubclass(FormulaError, ValueError)


# ------------------------------------------------------------------ evaluation: errors


@pytest.mark.parametrize(
    ("formula", "keyword"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ([], "empty"),
        ("3+x", "unexpected character"),
        ("3 × 4", "unexpected character"),
        (["3", "+", "four"], "unexpected element"),
        (["3", "+", " 4"], "unexpected element"),
        (["3", "+", ""], "unexpected element"),
        (["3", "+", "4.0"], "unexpected element"),
        (["3", None], "not a string"),
        ([3, "+", 4], "not a string"),
        ("2 4", "next to each other"),
        ("(1+2)(3+4)", "operator is missing"),
        ("3(4+1)", "operator is missing"),
        ("(4+1)3", "operator is missing"),
        ("3+", "right operand"),
        ("+3", "left operand"),
        ("(+3)", "left operand"),
        ("(3-)", "right operand"),
        ("3*/4", "two operators in a row"),
        ("()", "empty parentheses"),
        ("(3+4", "unbalanced"),
        ("3+4)", "unbalanced"),
        (")3+4(", "unbalanced"),
        ("4/0", "division by zero"),
        ("4/(2-2)", "division by zero"),
        ("1+8/(3*3-9)*2", "division by zero"),
        ("1234567+1", "too many digits"),
        ("1+" * 600 + "1", "too long"),
        (["1", "+"] * 200 + ["1"], "too long"),
        ("(" * (MAX_NESTING + 1) + "1" + ")" * (MAX_NESTING + 1), "nested too deeply"),
        ("2**10", "two operators in a row"),
        ("__import__('os').system('true')", "unexpected character"),
    ],
)
def test_invalid_formulas_have_specific_reasons(formula: object, keyword: str) -> None:
    result = evaluate(formula)  # type: ignore[arg-type]
    assert isinstance(result, Evaluation)
    assert not result.valid and result.value is None
    assert keyword in result.reason.lower(), result.reason


def test_reasons_are_distinct_sentences() -> None:
    cases = ["", "3+x", "2 4", "3(4)", "3+", "+3", "3*/4", "()", "(3", "3)", "4/0", "1234567"]
    reasons = [evaluate(case).reason for case in cases]
    assert len(set(reasons)) == len(reasons)
    for reason in reasons:
        assert reason.endswith(".") and "\n" not in reason and len(reason) < 120


def test_nesting_within_the_bound_is_fine() -> None:
    deep = "(" * MAX_NESTING + "1" + ")" * MAX_NESTING
    assert evaluate(deep).value == 1
    assert evaluate(list(deep)).value == 1


def test_operator_restriction() -> None:
    assert evaluate("3*4", operators="+*").value == 12
    for text, op in (("5-1", "-"), ("6/2", "/"), ("-3", "-")):
        result = evaluate(text, operators="+*")
        assert not result.valid and "not allowed" in result.reason and repr(op) in result.reason
    assert not evaluate("3+4", operators="").valid


def test_malformed_arguments_do_not_raise() -> None:
    for formula in (None, 5, 3.5, b"3+4", object(), {3: "x"}, itertools.count()):
        assert not evaluate(formula).valid  # type: ignore[arg-type]
    assert not evaluate("3+4", operators="+-x").valid
    assert not evaluate("3+4", operators=None).valid  # type: ignore[arg-type]
    for cards in ("34", [3, None], 7, [3.0, 4.0]):
        assert not evaluate("3+4", cards=cards).valid  # type: ignore[arg-type]


# ------------------------------------------------------------------ evaluation: cards


def test_cards_are_a_multiset() -> None:
    ok = evaluate(["10", "+", "10"], cards=[10, 10, 3, 4])
    assert ok.value == 20 and ok.numbers == (10, 10)
    too_often = evaluate(["10", "+", "10"], cards=[10, 3, 4, 5])
    assert not too_often.valid and "more times" in too_often.reason
    assert too_often.numbers == (10, 10)
    missing = evaluate("7+3", cards=[1, 3, 4, 5])
    assert not missing.valid and "7" in missing.reason and "not on the cards" in missing.reason


def test_using_fewer_cards_is_valid_and_numbers_tell_the_game() -> None:
    cards = [3, 4, 8, 8]
    partial = evaluate("3*8", cards=cards)
    assert partial.valid and sorted(partial.numbers) != sorted(cards)
    full = evaluate("(8-4)*(8-3)", cards=cards)
    assert full.valid and sorted(full.numbers) == sorted(cards)


def test_numbers_reported_as_far_as_tokenizing_got() -> None:
    assert evaluate("3+4*x").numbers == (3, 4)
    assert evaluate(["3", "+", "4", "y", "5"]).numbers == (3, 4)
    assert evaluate("(3+4").numbers == (3, 4)


def test_numpy_integer_cards_are_accepted() -> None:
    np = pytest.importorskip("numpy")
    assert evaluate("3+4", cards=np.array([3, 4])).value == 7


# ------------------------------------------------------------------ safety


def test_module_never_calls_eval_exec_or_compile() -> None:
    tree = ast.parse(inspect.getsource(formula_module))
    forbidden = {"eval", "exec", "compile", "literal_eval", "__import__"}
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", None)
            assert name not in forbidden


def test_nothing_is_executed(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*args: object, **kwargs: object) -> None:
        raise AssertionError("code execution attempted")

    for name in ("eval", "exec", "compile"):
        monkeypatch.setattr(builtins, name, boom)
    for text in ("__import__('os').system('true')", "2**10", "open('x')", "1 if 1 else 2"):
        assert not evaluate(text).valid
    assert evaluate("2*10").value == 20


# ------------------------------------------------------------------ fuzzing

FORMULA_ALPHABET = "0123456789+-*/() "


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_fuzz_arbitrary_text_never_raises(text: str) -> None:
    result = evaluate(text)
    assert isinstance(result, Evaluation)
    assert result.valid == (result.reason == "")


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(st.text(max_size=8), st.sampled_from(list("0123456789+-*/()")))))
def test_fuzz_arbitrary_element_lists_never_raise(elements: list[str]) -> None:
    result = evaluate(elements)
    assert result.valid == (result.reason == "")
    if result.valid:
        assert isinstance(result.value, Fraction)
        assert evaluate("".join(f" {e} " for e in elements)).value == result.value


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(st.none(), st.integers(), st.floats(), st.binary(), st.text())))
def test_fuzz_mixed_junk_lists_never_raise(elements: list[object]) -> None:
    assert isinstance(evaluate(elements), Evaluation)  # type: ignore[arg-type]


@settings(max_examples=500, deadline=None)
@given(st.text(alphabet=FORMULA_ALPHABET, max_size=40))
def test_fuzz_formula_alphabet_matches_reference(text: str) -> None:
    result = evaluate(text)
    expected = ref_evaluate(text)
    assert result.value == expected
    if result.valid:
        assert isinstance(result.value, Fraction)
        assert evaluate(tokenize(text)).value == result.value


trees = st.recursive(
    st.integers(min_value=0, max_value=12),
    lambda children: st.tuples(children, st.sampled_from("+-*/"), children),
    max_leaves=10,
)


@settings(max_examples=300, deadline=None)
@given(trees)
def test_fuzz_generated_trees_match_direct_arithmetic(tree: object) -> None:
    expected = tree_value(tree)
    for text in (full_parens(tree), "".join(minimal_print(tree)[0])):
        result = evaluate(text)
        assert result.value == expected, (text, result.reason)
        if expected is None:
            assert "division by zero" in result.reason.lower()
    printed = minimal_print(tree)[0]
    numbers = tuple(int(e) for e in printed if e.isdigit())
    assert evaluate(printed, cards=list(numbers)).value == expected


# ------------------------------------------------------------------ solver


def assert_all_solve(numbers: list[int], target: int, ops: str = "+-*/") -> None:
    found = solutions(numbers, target, ops)
    assert len(set(found)) == len(found)
    assert list(found) == sorted(found, key=lambda e: (len(e), e))
    for elements in found:
        result = evaluate(elements, cards=numbers, operators=ops)
        assert result.value == target, (elements, result.reason)
        assert sorted(result.numbers) == sorted(numbers)
        assert evaluate("".join(elements), cards=numbers, operators=ops).value == target


@pytest.mark.parametrize(
    ("numbers", "witness"),
    [
        ([1, 5, 5, 5], "5*(5-1/5)"),
        ([3, 3, 8, 8], "8/(3-8/3)"),
        ([4, 7, 8, 8], "(7-8/8)*4"),
        ([5, 5, 5, 5], "5*5-5/5"),
        ([1, 2, 3, 4], "1*2*3*4"),
    ],
)
def test_known_solvable(numbers: list[int], witness: str) -> None:
    assert evaluate(witness, cards=numbers).value == 24
    assert is_solvable(numbers, 24)
    assert tuple(tokenize(witness)) in solutions(numbers, 24)
    assert_all_solve(numbers, 24)
    best = solve(numbers, 24)
    assert best == solutions(numbers, 24)[0]


def test_famous_unique_solution() -> None:
    assert solutions([3, 3, 8, 8], 24) == (tuple("8/(3-8/3)"),)
    assert solutions([8, 3, 8, 3], 24) == solutions([3, 3, 8, 8], 24)


@pytest.mark.parametrize("numbers", [[1, 1, 1, 1], [1, 1, 1, 2], [1, 1, 2, 2], [9, 9, 10, 10]])
def test_known_unsolvable(numbers: list[int]) -> None:
    assert not brute_24(tuple(sorted(numbers)))  # the claim itself is checked first
    assert solutions(numbers, 24) == ()
    assert solve(numbers, 24) is None
    assert not is_solvable(numbers, 24)


def test_ezpoints() -> None:
    assert set(solutions([3, 4], 12, "+*")) == {("3", "*", "4"), ("4", "*", "3")}
    assert solutions([5, 5], 12, "+*") == ()
    assert not is_solvable([5, 5], 12, "+*")
    assert solutions([6, 6], 12, "+*") == (("6", "+", "6"),)
    assert_all_solve([2, 10], 12, "+*")
    # the operator restriction matters: 10+2 is fine, but 15-3 is not in EZPoints
    assert solutions([15, 3], 12, "+*") == () and is_solvable([15, 3], 12)


@pytest.mark.parametrize(
    ("numbers", "target", "ops"),
    [
        ([1, 2, 3, 4], 24, "+-*/"),
        ([4, 7, 8, 8], 24, "+-*/"),
        ([1, 5, 5, 5], 24, "+-*/"),
        ([2, 2, 6, 6], 24, "+-*/"),
        ([0, 0, 4, 6], 24, "+-*/"),
        ([0, 0, 3], 0, "+-*/"),
        ([1, 2, 3], 6, "+*"),
        ([3, 8], 24, "*"),
    ],
)
def test_solutions_equal_brute_force_exactly(numbers: list[int], target: int, ops: str) -> None:
    """Same set as the minimal prints of every tree: complete, and nothing extra."""
    assert set(solutions(numbers, target, ops)) == brute_solutions(numbers, target, ops)
    assert_all_solve(numbers, target, ops)


def test_solvable_hand_count_and_cross_check() -> None:
    assert len(ALL_HANDS) == 715
    brute = {hand: brute_24(hand) for hand in ALL_HANDS}
    solvable = sum(brute.values())
    assert solvable == 566
    for hand in ALL_HANDS:
        assert is_solvable(hand, 24) == brute[hand], hand


def test_solutions_of_random_hands_are_sound() -> None:
    rng = random.Random(24)
    for hand in rng.sample(ALL_HANDS, 60):
        found = solutions(hand, 24)
        assert bool(found) == brute_24(hand)
        assert_all_solve(list(hand), 24)


def test_solver_is_fast_and_cached() -> None:
    start = time.perf_counter()
    first = solutions([101, 103, 107, 109], 24)
    assert time.perf_counter() - start < 0.05
    assert first == ()
    fresh = [13, 11, 2, 1]
    assert solutions(fresh, 24) is solutions(sorted(fresh), 24)  # cached, order-free


def test_solver_edge_cases() -> None:
    assert solutions([], 24) == () and not is_solvable([], 24) and solve([], 24) is None
    assert solutions([24], 24) == (("24",),)
    zero = solutions([0, 5], 0)
    assert ("0", "/", "5") in zero and ("5", "/", "0") not in zero
    with pytest.raises(ValueError):
        solutions([-1, 25], 24)
    with pytest.raises(ValueError):
        solutions([1, 2], 3, "+^")
