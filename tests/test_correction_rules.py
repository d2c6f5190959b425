"""Every correction rule against its fixture cases (tests/fixtures/rules/<rule>.yaml), and the
rule list (querycraft.correction.rules.RULES) against the config, conf/ and the docs.

A case is run with the rule alone (the default) or with every rule on; see the header of any
fixture file for the fields.
"""

from __future__ import annotations

import importlib
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from querycraft.correction import RULES, correct_sql
from querycraft.correction.rules import RULES as RULE_OBJECTS
from querycraft.ddl import schema_from_ddl
from querycraft.schema import read_schema
from querycraft.services.correct import CorrectConfig
from tests.conftest import PROJECT_ROOT

FIXTURES = Path(__file__).parent / "fixtures" / "rules"
SCHEMAS = FIXTURES / "schemas"
DEFAULT_SCHEMA = "concert_singer"
CASE_KEYS = {"why", "sql", "expected", "rules", "schema", "db", "unresolved", "fired", "options",
             "expected_off"}


def load_cases(rule: str) -> list[dict[str, Any]]:
    path = FIXTURES / f"{rule}.yaml"
    return yaml.safe_load(path.read_text()) if path.is_file() else []


def all_cases() -> list[Any]:
    return [pytest.param(rule, case, id=f"{rule}-{i}")
            for rule in RULES for i, case in enumerate(load_cases(rule), 1)]


def case_schema(case: dict[str, Any]) -> dict[str, list[str]] | None:
    if "db" in case:  # a database file of the project: its schema, as service=correct reads it
        return schema_from_ddl(read_schema(PROJECT_ROOT / case["db"]))
    schema = case.get("schema", DEFAULT_SCHEMA)
    if isinstance(schema, str):
        return yaml.safe_load((SCHEMAS / f"{schema}.yaml").read_text())
    return schema


@pytest.mark.parametrize(("rule", "case"), all_cases())
def test_rule_case(rule: str, case: dict[str, Any]) -> None:
    assert set(case) <= CASE_KEYS and {"why", "sql", "expected"} <= set(case), case
    raw = case["sql"]
    expected = raw.strip() if case["expected"] == "unchanged" else case["expected"]
    changes = expected != raw.strip()
    alone = case.get("rules", "alone") == "alone"
    assert case.get("rules", "alone") in ("alone", "all")
    switches = {name: name == rule for name in RULES} if alone else None
    schema = case_schema(case)
    options = case.get("options", {})
    result = correct_sql(raw, schema=schema, rules=switches, **options)
    assert result.sql == expected, case["why"]
    if "unresolved" in case:
        assert result.unresolved == case["unresolved"], case["why"]
    if "fired" in case:
        assert result.fired == case["fired"], case["why"]
    elif alone:
        assert result.fired == ([rule] if changes else [])
    elif changes:
        assert rule in result.fired
    else:
        assert rule not in result.fired
    assert result.fired == [r for r in RULES if r in result.fired]  # the fixed order
    if not alone and changes:  # switched off, the fault stays
        off = correct_sql(raw, schema=schema, rules={rule: False}, **options)
        assert rule not in off.fired
        if "expected_off" in case:
            assert off.sql == case["expected_off"], case["why"]
        else:
            assert off.sql != expected, case["why"]


@pytest.mark.parametrize("rule", RULES)
def test_every_rule_has_fixture_cases(rule: str) -> None:
    cases = load_cases(rule)
    assert cases, f"tests/fixtures/rules/{rule}.yaml is missing or empty"
    # At least one case the rule changes and one it must leave as it is.
    assert any(c["expected"] != "unchanged" for c in cases), rule
    assert any(c["expected"] == "unchanged" for c in cases), rule


def test_no_fixture_without_a_rule() -> None:
    assert {p.stem for p in FIXTURES.glob("*.yaml")} == set(RULES)


def test_rules_are_modules_named_like_their_function() -> None:
    assert [r.name for r in RULE_OBJECTS] == list(RULES)
    assert len(set(RULES)) == len(RULES)
    for rule in RULE_OBJECTS:
        module = importlib.import_module(f"querycraft.correction.rules.{rule.name}")
        assert rule.apply is getattr(module, rule.name)
        assert rule.description == module.DESCRIPTION and "\n" not in rule.description


def test_config_switches_are_the_rules_in_order() -> None:
    assert list(CorrectConfig().rules) == list(RULES)
    assert all(CorrectConfig().rules.values())


def test_rules_that_parse_are_off_for_a_dialect_sqlglot_does_not_know() -> None:
    parsing = [rule.name for rule in RULE_OBJECTS if rule.parses]
    assert parsing == ["fix_identifiers", "fix_qualifiers", "fit_dialect", "reformat"]
    # reformat would re-render this; with an unknown dialect the text comes back as it was.
    result = correct_sql("select  a   from t", read_dialect="nosuchdialect")
    assert result.sql == "select  a   from t" and not set(result.fired) & set(parsing)
    assert correct_sql("select  a   from t").fired == ["reformat"]


def test_docs_table_is_the_rules_in_order_with_their_descriptions() -> None:
    text = (PROJECT_ROOT / "docs" / "CORRECT.md").read_text()
    rows = re.findall(r"^\| (\d+) \| `(\w+)` \| (.*) \|$", text, re.MULTILINE)
    assert [(int(n), name) for n, name, _ in rows] == list(enumerate(RULES, 1))
    assert [desc for _, _, desc in rows] == [r.description for r in RULE_OBJECTS]
