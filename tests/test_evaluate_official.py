"""Evaluate against the official Spider test-suite evaluator (``exec_eval.eval_exec_match``),
case by case, on a Spider database: where evaluate once differed, it now does what the
official evaluator does by default (each stricter rule behind its switch), and a result cut at
the row cap is never scored equal to a different one.

The expected values are the official evaluator's answers: it joins ``> =`` before running,
compares row order whenever ``order by`` appears in the gold text, compares numbers exactly
(Python's ``==``), and fetches whole results.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from querycraft import db as dbmod
from querycraft.compare import ResultDigest, digest_permutations, results_match
from querycraft.services.evaluate import Scoring, score_execution
from querycraft.sql import join_split_operators
from querycraft.targets import DatabaseTarget

CONCERT = (Path(__file__).parent / "fixtures" / "spider" / "database" / "concert_singer"
           / "concert_singer.sqlite")


def score(gold: str, pred: str, **overrides) -> dict:
    settings = {"target": DatabaseTarget("sqlite", location=str(CONCERT)),
                "timeout_s": 5.0, "max_rows": 10_000, "distinct": "keep", "exact_set": False,
                "preview_rows": 3}
    with dbmod.SqliteDatabase(CONCERT) as database:
        return score_execution(gold, pred, database, Scoring(**{**settings, **overrides}))


# ------------------------------------------------------------ 1. "> =" split by a space


@pytest.mark.parametrize("pred", [
    "SELECT count(*) FROM singer WHERE Age > = 40",
    "SELECT count(*) FROM singer WHERE NOT Age < = 39",
    "SELECT count(*) FROM singer WHERE Age ! = 0 AND Age > = 40",
])
def test_split_operator_is_joined_as_the_official_evaluator_does(pred):
    gold = "SELECT count(*) FROM singer WHERE Age >= 40"
    assert score(gold, pred)["execution_match"]
    strict = score(gold, pred, split_operators="error")
    assert not strict["execution_match"] and strict["error_kind"] == "syntax"


def test_split_operator_inside_a_string_literal_is_left_alone():
    assert join_split_operators("SELECT 'a > = b' WHERE x > = 1") == "SELECT 'a > = b' WHERE x >= 1"
    gold = "SELECT count(*) FROM singer WHERE Name = 'a > = b'"
    assert score(gold, "SELECT count(*) FROM singer WHERE Name = 'a >= b'")["execution_match"]


# ------------------------------------------------- 2. "order by" anywhere in the gold text

SUBQUERY_ORDER = ("SELECT Name FROM singer WHERE Singer_ID IN "
                  "(SELECT Singer_ID FROM singer ORDER BY Age DESC LIMIT 3)")
SAME_ROWS_OTHER_ORDER = ("SELECT Name FROM singer WHERE Singer_ID IN "
                         "(SELECT Singer_ID FROM singer ORDER BY Age DESC LIMIT 3) "
                         "ORDER BY Name DESC")


def test_precondition_same_rows_in_another_order():
    with dbmod.SqliteDatabase(CONCERT) as database:
        gold = database.execute(SUBQUERY_ORDER).rows
        pred = database.execute(SAME_ROWS_OTHER_ORDER).rows
    assert sorted(gold) == sorted(pred) and gold != pred


def test_order_by_only_in_a_subquery_makes_order_count():
    item = score(SUBQUERY_ORDER, SAME_ROWS_OTHER_ORDER)
    assert not item["execution_match"] and item["relation"] == "order_differs"
    assert score(SUBQUERY_ORDER, SAME_ROWS_OTHER_ORDER, order_rule="outer")["execution_match"]


def test_order_by_in_a_string_literal_makes_order_count():
    gold = "SELECT Name FROM singer WHERE Name != 'order by'"
    pred = "SELECT Name FROM singer ORDER BY Name DESC"
    assert not score(gold, pred)["execution_match"]
    assert score(gold, pred, order_rule="outer")["execution_match"]


def test_without_order_by_in_the_gold_order_never_counts():
    assert score("SELECT Name FROM singer", "SELECT Name FROM singer ORDER BY Name DESC"
                 )["execution_match"]


# ------------------------------------------------------------------ 3. numbers exactly


AVG = "SELECT avg(Age) FROM singer WHERE Singer_ID <= 3"  # 37.666...


@pytest.mark.parametrize(("gold", "pred", "official", "six_digits"), [
    ("SELECT 0.1234567", "SELECT 0.1234568", False, True),  # the 7th digit differs
    ("SELECT 37.0", "SELECT 37.0000001", False, False),  # integral against non-integral
    ("SELECT 37.0", "SELECT 37", True, True),  # 37.0 == 37, as in Python
    (AVG, "SELECT sum(Age) * 1.0 / count(*) FROM singer WHERE Singer_ID <= 3", True, True),
    (AVG, "SELECT round(avg(Age), 2) FROM singer WHERE Singer_ID <= 3", False, False),
])
def test_numbers_compare_exactly_unless_float_digits_is_set(gold, pred, official, six_digits):
    assert score(gold, pred)["execution_match"] is official
    assert score(gold, pred, float_digits=6)["execution_match"] is six_digits


# ------------------------------------------ 4. results longer than the row cap (max_rows)

# 6 x 6 x 6 = 216 rows; with max_rows=20 every one of these is cut.
CROSS = "SELECT a.Name, b.Age, c.Singer_ID FROM singer AS a, singer AS b, singer AS c"
CROSS_ORDERED = CROSS + " ORDER BY a.Name, b.Age, c.Singer_ID"
# Different results that agree on (at least) their first 20 rows.
DIFFERENT_FROM_CROSS = [
    CROSS + " LIMIT 21",  # the official evaluator's 164,836-row gold vs "LIMIT 10001" case
    CROSS + " LIMIT 215",
    CROSS + " UNION ALL SELECT 'x', 1, 1",  # one row more
    # the last row's value changed
    "SELECT a.Name, CASE WHEN a.Singer_ID = 6 AND b.Singer_ID = 6 AND c.Singer_ID = 6 "
    "THEN -1 ELSE b.Age END, c.Singer_ID FROM singer AS a, singer AS b, singer AS c",
    # one row duplicated, another dropped: same length, same set of rows but one
    f"SELECT * FROM ({CROSS} LIMIT 215) UNION ALL SELECT 'Joe Sharp', 52, 1",
    "SELECT a.Name, b.Age, c.Singer_ID, 0 FROM singer AS a, singer AS b, singer AS c",
    "SELECT a.Name, b.Name, c.Singer_ID FROM singer AS a, singer AS b, singer AS c",
]


@pytest.mark.parametrize("pred", DIFFERENT_FROM_CROSS)
def test_a_cut_result_is_never_scored_equal_to_a_different_one(pred):
    with dbmod.SqliteDatabase(CONCERT) as database:
        whole_gold = database.execute(CROSS, max_rows=10_000).rows
        whole_pred = database.execute(pred, max_rows=10_000).rows
        cut_gold = database.execute(CROSS, max_rows=20)
        cut_pred = database.execute(pred, max_rows=20)
    assert sorted(map(repr, whole_gold)) != sorted(map(repr, whole_pred))  # really different
    assert cut_gold.truncated and cut_pred.truncated
    assert not results_match(cut_gold, cut_pred, order_matters=False)
    item = score(CROSS, pred, max_rows=20)
    assert not item["execution_match"], item
    assert item["relation"] or item["error_kind"] == "too_large"


def test_cut_results_are_compared_whole():
    same = score(CROSS, CROSS, max_rows=20)
    assert same["execution_match"] and same["gold_rows"] == same["pred_rows"] == 216
    # The same rows in another order and with the columns in another order.
    shuffled = ("SELECT c.Singer_ID, a.Name, b.Age FROM singer AS a, singer AS b, singer AS c "
                "ORDER BY b.Age DESC, c.Singer_ID")
    assert score(CROSS, shuffled, max_rows=20)["execution_match"]
    cut = score(CROSS, CROSS + " LIMIT 21", max_rows=20)
    assert (cut["relation"], cut["gold_rows"], cut["pred_rows"]) == ("fewer_rows", 216, 21)


def test_cut_ordered_results_compare_in_order():
    assert score(CROSS_ORDERED, CROSS_ORDERED, max_rows=20)["execution_match"]
    reversed_ = CROSS + " ORDER BY a.Name, b.Age, c.Singer_ID DESC"
    item = score(CROSS_ORDERED, reversed_, max_rows=20)
    assert not item["execution_match"] and item["relation"] == "different_values"


def test_only_one_side_cut_is_never_equal():
    item = score(CROSS, CROSS + " LIMIT 20", max_rows=20)  # 20 rows: not cut
    assert not item["execution_match"] and item["relation"] == "fewer_rows"


# ------------------------------------------------------------------- the digest itself


def test_result_digest_orders_and_multisets():
    rows = [(1, "a"), (2, "b"), (2, "b")]

    def digest(rows, ordered, orders=None):
        d = ResultDigest(ordered, orders)
        for row in rows:
            d.add(row)
        return d

    assert digest(rows, False).digests() == digest(rows[::-1], False).digests()
    assert digest(rows, True).digests() != digest(rows[::-1], True).digests()
    assert digest(rows, False).digests() != digest([(1, "a"), (1, "a"), (2, "b")],
                                                   False).digests()
    swapped = [(b, a) for a, b in rows]
    gold, pred = digest(rows, False), digest(swapped, False)
    assert digest_permutations(gold, pred) == [(1, 0)]
    assert digest(swapped, False, [(1, 0)]).digests() == gold.digests()
    # 1 == 1.0 in a digest as in results_match
    assert digest([(1,)], False).digests() == digest([(1.0,)], False).digests()


def test_digest_permutations_cap():
    wide = [tuple(itertools.repeat(7, 8))]
    gold = ResultDigest(False)
    gold.add(wide[0])
    assert digest_permutations(gold, gold) is None  # 8! orders: too many to try


# -------------------------------------------- the same on the servers (streamed cursors)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["postgres", "mysql"])
def test_cut_results_are_compared_whole_on_servers(kind, request):
    """The row sink on a server: fetching goes on past the cap (and past MySQL's
    sql_select_limit), in batches, without keeping the rows."""
    from tests.conftest import (
        create_singers,
        fresh_mysql_database,
        fresh_postgres_database,
        mysql_select_only_user,
        postgres_read_only_role,
    )

    fresh = fresh_postgres_database if kind == "postgres" else fresh_mysql_database
    reader = postgres_read_only_role if kind == "postgres" else mysql_select_only_user
    cross = "SELECT a.name, b.age, c.singer_id FROM singer AS a, singer AS b, singer AS c"
    with fresh() as url, reader(create_singers(url)) as read_url:
        target = DatabaseTarget(kind, url=read_url)
        settings = Scoring(target=target, timeout_s=10.0, max_rows=5, distinct="keep",
                           exact_set=False, preview_rows=3)
        with dbmod.Databases(target) as databases:
            database = databases.get()
            same = score_execution(cross, cross, database, settings)
            shorter = score_execution(cross, cross + " LIMIT 6", database, settings)
    assert same["execution_match"] and same["gold_rows"] == same["pred_rows"] == 27
    assert not shorter["execution_match"] and shorter["pred_rows"] == 6
