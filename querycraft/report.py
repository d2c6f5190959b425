"""HTML pages for evaluation results: one page per evaluation run and a leaderboard.

Pages are self-contained, so they can be mailed, archived or opened from a file share: the
CSS is inline, charts are inline SVG, the leaderboard's column sorting is a few lines of
inline script, and nothing is fetched (no external scripts, fonts or CDNs).
Every string that comes from a run (questions, SQL, model names, error messages, result
values) is HTML-escaped. Only the standard library is used for the HTML; the lists of
difficulty buckets and error kinds come from the modules that produce them.

The input is what ``service=evaluate`` writes: the summary (``summary.json``, read as an
:class:`~querycraft.artifacts.EvaluationSummary`) and the
per-item results (``items.jsonl``). Older summaries with fewer keys render too: what is
missing is left out or shown as a dash.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from html import escape
from typing import Any

from querycraft.artifacts import EvaluationSummary
from querycraft.sql_analysis import HARDNESS_LEVELS

# How many failing items the run page lists; the rest are counted.
MAX_FAILING = 200
# The longest result value and SQL text a page shows; longer ones are cut with a marker
# (evaluate cuts them in items.jsonl already; older items may not be).
VALUE_CHARS = 1_000
TEXT_CHARS = 20_000
CUT_MARKER = "… [cut: {total} characters in all]"
_ALREADY_CUT = re.compile(r"… \[cut: \d+ characters in all\]\Z")
# A bucket (difficulty, feature) or a run with fewer items than this is marked as a small
# sample: its accuracy says little.
SMALL_SAMPLE = 10


def cut_value(value: Any, limit: int) -> Any:
    """``value`` itself, or a string or bytes value longer than ``limit`` characters cut to
    ``limit`` with a visible marker saying how long it was (a value cut before keeps its
    marker)."""
    if isinstance(value, (bytes, bytearray)) and len(value) > limit:
        return repr(bytes(value[:limit])) + CUT_MARKER.format(total=len(value))
    if isinstance(value, str) and len(value) > limit:
        marker = _ALREADY_CUT.search(value, len(value) - 64)
        if marker is not None and marker.start() <= limit:
            return value
        return value[:limit] + CUT_MARKER.format(total=len(value))
    return value

# What each item error kind means (the kinds: querycraft.services.evaluate.ITEM_ERROR_KINDS).
ERROR_KIND_TEXT = {
    "syntax": "the SQL does not parse",
    "no_such_table": "a table that does not exist",
    "no_such_column": "a column that does not exist",
    "ambiguous_column": "an ambiguous column name",
    "timeout": "stopped after the time limit",
    "refused": "refused: not a read-only query",
    "other": "the database reported an error",
    "empty": "no SQL in the model's output",
    "not_sql": "not SQL: the output does not begin with an SQL statement",
    "gold_failed": "the gold SQL itself failed",
    "too_large": "over a size bound: the SQL text (not parsed), a value or the whole result",
    "too_complex": "nested too deeply to analyse",
    "connection_lost": "the connection died during the query (a fresh one was opened)",
    "budget": "stopped after the item's time budget (evaluate.item_budget_s)",
    "crashed": "scoring failed: an exception, or the worker process died",
}

RELATIONS = {
    "same": "same rows",
    "prediction_empty": "the prediction returned no rows",
    "gold_empty": "the gold query returns no rows, the prediction does",
    "partial_overlap": "some rows in common, some not",
    "more_rows": "the prediction returned extra rows",
    "fewer_rows": "the prediction returned only some of the rows",
    "different_columns": "a different number of columns",
    "order_differs": "the same rows in a different order (the gold query has ORDER BY)",
    "different_values": "different values",
}

CSS = """
:root { --ink:#1d2330; --muted:#5d6678; --line:#d9dee8; --bg:#f6f7fa; --card:#fff;
        --accent:#2f6fdb; --good:#1f8a4c; --bad:#c0392b; --warn:#b7791f; }
* { box-sizing: border-box; }
body { margin:0; background:var(--bg); color:var(--ink);
       font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif; }
main { max-width:1280px; margin:0 auto; padding:24px 28px 48px; }
h1 { font-size:24px; margin:0 0 4px; }
h2 { font-size:18px; margin:32px 0 10px; border-bottom:1px solid var(--line);
     padding-bottom:4px; }
h3 { font-size:14px; margin:0 0 6px; color:var(--muted); font-weight:600; }
p.sub, .muted { color:var(--muted); }
p.sub { margin:0 0 16px; }
code, pre, .mono { font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;
                   font-size:12.5px; }
pre { margin:0; white-space:pre-wrap; word-break:break-word; background:#f1f3f8;
      border:1px solid var(--line); border-radius:4px; padding:6px 8px; }
.cards { display:flex; flex-wrap:wrap; gap:12px; }
.card { background:var(--card); border:1px solid var(--line); border-radius:8px;
        padding:12px 16px; min-width:150px; }
.card .value { font-size:26px; font-weight:700; }
.card .label { color:var(--muted); font-size:12px; text-transform:uppercase;
               letter-spacing:.04em; }
.meta { display:grid; grid-template-columns:max-content 1fr; gap:2px 14px; margin:14px 0 0;
        background:var(--card); border:1px solid var(--line); border-radius:8px;
        padding:10px 14px; }
.meta dt { color:var(--muted); }
.meta dd { margin:0; word-break:break-all; }
.charts { display:grid; grid-template-columns:repeat(auto-fit,minmax(520px,1fr)); gap:14px; }
.chart-box { background:var(--card); border:1px solid var(--line); border-radius:8px;
             padding:12px 14px; }
svg.chart { display:block; width:100%; height:auto; }
svg.chart text { font:12px system-ui,-apple-system,"Segoe UI",Roboto,Arial,sans-serif;
                 fill:var(--ink); }
svg.chart text.value { fill:var(--muted); }
table.grid { border-collapse:collapse; width:100%; background:var(--card);
             border:1px solid var(--line); }
table.grid th, table.grid td { border-bottom:1px solid var(--line); padding:6px 8px;
                               text-align:left; vertical-align:top; }
table.grid th { background:#eef1f7; font-weight:600; white-space:nowrap; }
table.leaderboard { table-layout:fixed; }
table.leaderboard td, table.leaderboard th { overflow-wrap:anywhere; word-break:break-word; }
table.leaderboard th { white-space:normal; cursor:pointer; user-select:none; }
table.leaderboard th[aria-sort=ascending]::after { content:" ▲"; }
table.leaderboard th[aria-sort=descending]::after { content:" ▼"; }
table.leaderboard col.narrow { width:4.5em; } table.leaderboard col.when { width:8.5em; }
table.leaderboard col.wide { width:16%; }
table.grid td.num, table.grid th.num { text-align:right; font-variant-numeric:tabular-nums;
                                       white-space:nowrap; }
table.grid tr.headline td { font-weight:600; }
table.failing td { width:25%; }
table.failing td.id { width:auto; white-space:nowrap; }
table.preview { border-collapse:collapse; margin-top:6px; font-size:12px; }
table.preview td { border:1px solid var(--line); padding:1px 6px; background:#fbfcfe; }
.null { color:var(--muted); font-style:italic; }
.badge { display:inline-block; border-radius:10px; padding:0 8px; font-size:12px;
         font-weight:600; background:#e8ecf4; margin:0 4px 2px 0; }
.badge.error { background:#fbe3e0; color:var(--bad); }
.badge.relation { background:#fdf0d9; color:var(--warn); }
.badge.good { background:#e0f3e8; color:var(--good); }
.delta-up { color:var(--good); } .delta-down { color:var(--bad); }
.empty { color:var(--muted); font-style:italic; padding:8px 0; }
a { color:var(--accent); }
"""


def _e(value: Any) -> str:
    """Escape any value for HTML text and attribute values."""
    return escape("" if value is None else str(value), quote=True)


def _pct(value: Any) -> str:
    """A 0..1 score as a percentage, or a dash when it is missing."""
    if value is None or isinstance(value, bool):
        return "—"
    try:
        return f"{float(value) * 100:.1f}%"
    except (TypeError, ValueError):
        return "—"


def _page(title: str, body: str) -> str:
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
            f"<title>{_e(title)}</title>\n<style>{CSS}</style>\n</head>\n"
            f"<body>\n<main>\n{body}\n</main>\n</body>\n</html>\n")


def short_name(value: Any) -> str:
    """A path's last part (``/data/models/qwen`` -> ``qwen``); a hub id (``org/name``) and
    anything else as it is."""
    text = str(value or "").rstrip("/\\").replace("\\", "/")
    is_path = text.startswith(("/", "./", "../", "~")) or re.match(r"[A-Za-z]:/", text) \
        or text.count("/") > 1
    return text.rsplit("/", 1)[-1] if is_path else text


def model_label(summary: EvaluationSummary) -> str:
    """The model: its preset (``model=...``) when the run recorded one, else the hub id or
    the model folder's name, never an absolute path."""
    return str(summary.preset or short_name(summary.model) or "unknown model")


def dataset_label(summary: EvaluationSummary) -> str:
    """The dataset: the ingest run folder's name."""
    return short_name(summary.dataset) or "—"


def run_label(summary: EvaluationSummary, run_name: str | None = None) -> str:
    """A run in words: model preset, adapter (or base model) and dataset, then the run
    folder's name, e.g. ``tiny · lora r=8 α=16 · 1-ingest (6-evaluate)``."""
    label = " · ".join((model_label(summary), adapter_label(summary), dataset_label(summary)))
    return f"{label} ({run_name})" if run_name else label


def adapter_label(summary: EvaluationSummary) -> str:
    """The adapter in a few words: ``qlora r=16 α=32``, the adapter's name, or base model
    (when no adapter wrote the predictions, whatever the finetune run's settings)."""
    peft = summary.peft
    if not summary.adapter:
        return "base model"
    if isinstance(peft, Mapping) and peft:
        parts = [str(peft.get("method") or "adapter")]
        if peft.get("r") is not None:
            parts.append(f"r={peft['r']}")
        if peft.get("alpha") is not None:
            parts.append(f"α={peft['alpha']}")
        return " ".join(parts)
    return str(summary.adapter).rstrip("/\\").replace("\\", "/").rsplit("/", 1)[-1]


def bar_chart(title: str, bars: list[tuple[str, float, str]], *, percent: bool,
              chart_id: str) -> str:
    """A horizontal bar chart as inline SVG.

    Args:
        bars: (label, value, text shown after the bar) per bar, drawn top to bottom.
        percent: values are 0..1 scores drawn on a 0..100% axis; otherwise counts, drawn
            against the largest.
        chart_id: a stable ``data-chart`` name for the figure.
    """
    head = f"<div class=\"chart-box\" data-chart=\"{_e(chart_id)}\"><h3>{_e(title)}</h3>"
    if not bars:
        return head + "<div class=\"empty\">Nothing to show.</div></div>"
    longest = max(len(label) for label, _, _ in bars)
    label_chars = min(max(longest, 12), 44)  # longer labels are cut, in full on hover
    label_w, bar_w, value_w, row_h, top = 7 * label_chars + 12, 300, 110, 24, 6
    width = label_w + bar_w + value_w
    height = top + row_h * len(bars) + (18 if percent else 6)
    scale = 1.0 if percent else max((v for _, v, _ in bars), default=0) or 1.0
    parts = [f"<svg class=\"chart\" xmlns=\"http://www.w3.org/2000/svg\" "
             f"style=\"max-width:{width}px\" viewBox=\"0 0 {width} {height}\" role=\"img\" "
             f"aria-label=\"{_e(title)}\"><title>{_e(title)}</title>"]
    if percent:  # gridlines at 0, 25, 50, 75, 100%
        for tick in range(0, 101, 25):
            x = label_w + bar_w * tick / 100
            parts.append(f"<line x1=\"{x:.1f}\" y1=\"{top}\" x2=\"{x:.1f}\" "
                         f"y2=\"{top + row_h * len(bars)}\" stroke=\"#e3e7ef\"/>"
                         f"<text x=\"{x:.1f}\" y=\"{height - 4}\" text-anchor=\"middle\" "
                         f"class=\"value\">{tick}%</text>")
    for n, (label, value, text) in enumerate(bars):
        y = top + n * row_h
        length = max(0.0, min(1.0, float(value) / scale)) * bar_w
        short = label if len(label) <= label_chars else label[:label_chars - 1] + "…"
        color = "#2f6fdb" if percent else "#8a6fdb"
        parts.append(
            f"<g><title>{_e(label)}: {_e(text)}</title>"
            f"<text x=\"{label_w - 8}\" y=\"{y + 16}\" text-anchor=\"end\">{_e(short)}</text>"
            f"<rect x=\"{label_w}\" y=\"{y + 4}\" width=\"{length:.1f}\" height=\"{row_h - 8}\" "
            f"rx=\"2\" fill=\"{color}\"/>"
            f"<text x=\"{label_w + length + 6:.1f}\" y=\"{y + 16}\" class=\"value\">"
            f"{_e(text)}</text></g>")
    parts.append("</svg>")
    return head + "".join(parts) + "</div>"


def _accuracy_bars(groups: dict[str, Any], order: list[str]) -> list[tuple[str, float, str]]:
    """One bar per bucket; a bucket under SMALL_SAMPLE items is marked with an asterisk."""
    bars = []
    for name in order:
        group = groups.get(name) or {}
        if not group.get("count"):
            continue
        accuracy = group.get("execution_accuracy") or 0.0
        small = "*" if group["count"] < SMALL_SAMPLE else ""
        bars.append((f"{name} ({group['count']}){small}", float(accuracy), _pct(accuracy)))
    return bars


def _small_buckets(*groups: dict[str, Any]) -> bool:
    return any(0 < int((g or {}).get("count") or 0) < SMALL_SAMPLE
               for group in groups for g in (group or {}).values())


def _count_bars(counts: dict[str, Any]) -> list[tuple[str, float, str]]:
    ordered = sorted(((k, int(v)) for k, v in (counts or {}).items() if v),
                     key=lambda kv: (-kv[1], kv[0]))
    return [(name, float(count), str(count)) for name, count in ordered]


def _cards(summary: EvaluationSummary) -> str:
    cards = [("Execution accuracy", _pct(summary.execution_accuracy), "ex"),
             ("Exact match", _pct(summary.exact_match), "em")]
    if summary.exact_set_match is not None:
        cards.append(("Exact set match", _pct(summary.exact_set_match), "esm"))
    cards += [("Token match", _pct(summary.token_match), "token"),
              ("Valid SQL", _pct(summary.valid_sql_rate), "valid"),
              ("Items", _e("—" if summary.items is None else summary.items), "items")]
    return "<div class=\"cards\">" + "".join(
        f"<div class=\"card\" data-metric=\"{key}\"><div class=\"label\">{_e(label)}</div>"
        f"<div class=\"value\">{value}</div></div>" for label, value, key in cards) + "</div>"


def _meta(summary: EvaluationSummary) -> str:
    adapter, peft = summary.adapter, summary.peft
    rows = [("Model", summary.model), ("Preset", summary.preset),
            ("Adapter", adapter or "none (base model)"),
            ("Adapter settings", adapter_label(summary) if adapter and peft else None),
            ("Dataset", summary.dataset), ("Database", summary.database),
            ("Predictions", summary.predictions),
            ("Headline column", summary.column),
            ("DISTINCT", summary.distinct),
            ("Gold queries that failed", summary.gold_failed or None),
            ("Seconds", summary.seconds)]
    if adapter and isinstance(peft, Mapping) and peft:
        rows.append(("PEFT", json.dumps(dict(peft), sort_keys=True, default=str)))
    return "<dl class=\"meta\">" + "".join(
        f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in rows if v not in (None, "")) + "</dl>"


COLUMN_ROWS = (("Execution accuracy", "execution_accuracy"), ("Exact match", "exact_match"),
                  ("Exact set match", "exact_set_match"), ("Token match", "token_match"),
                  ("Valid SQL", "valid_sql_rate"))


def _columns_table(summary: EvaluationSummary) -> str:
    """Raw and corrected SQL scored side by side (when both were scored)."""
    columns = summary.columns
    if len(columns) < 2:
        return ""
    names = list(columns)
    headline = summary.column
    head = "".join(f"<th class=\"num\" data-column=\"{_e(n)}\">{_e(n)}"
                   f"{' (headline)' if n == headline else ''}</th>" for n in names)
    delta_head = (f"<th class=\"num\">{_e(names[1])} − {_e(names[0])}</th>"
                  if len(names) == 2 else "")
    rows = []
    for label, key in COLUMN_ROWS:
        values = [columns[n].get(key) for n in names]
        if all(v is None for v in values):
            continue
        cells = "".join(f"<td class=\"num\">{_pct(v)}</td>" for v in values)
        delta = ""
        if len(names) == 2:
            if None in values:
                delta = "<td class=\"num\">—</td>"
            else:
                diff = (float(values[1]) - float(values[0])) * 100
                css = "delta-up" if diff > 0 else "delta-down" if diff < 0 else ""
                delta = f"<td class=\"num {css}\">{diff:+.1f} pt</td>"
        rows.append(f"<tr><td>{_e(label)}</td>{cells}{delta}</tr>")
    return ("<h2>Raw and corrected SQL</h2>"
            "<table class=\"grid columns\"><thead><tr><th>Metric</th>"
            f"{head}{delta_head}</tr></thead><tbody>{''.join(rows)}</tbody></table>")


def _cell_value(value: Any) -> str:
    if value is None:
        return "<span class=\"null\">NULL</span>"
    if isinstance(value, (list, dict)):
        return _e(cut_value(json.dumps(value, default=str), VALUE_CHARS))
    return _e(cut_value(value if isinstance(value, (str, bytes)) else str(value), VALUE_CHARS))


def _preview(label: str, rows: Any, count: Any) -> str:
    if rows is None:
        return f"<div class=\"muted\">{_e(label)}: no result</div>"
    total = count if isinstance(count, int) else len(rows)
    shown = f", first {len(rows)} shown" if total > len(rows) else ""
    caption = f"<div class=\"muted\">{_e(label)}: {total} row{'s' if total != 1 else ''}{shown}"
    caption += "</div>"
    if not rows:
        return caption
    body = "".join("<tr>" + "".join(f"<td>{_cell_value(v)}</td>" for v in
                                    (row if isinstance(row, (list, tuple)) else [row]))
                   + "</tr>" for row in rows)
    return caption + f"<table class=\"preview\"><tbody>{body}</tbody></table>"


def _why(item: dict[str, Any]) -> str:
    kind, relation = item.get("error_kind") or "", item.get("relation") or ""
    if kind:
        text = (f"<span class=\"badge error\">{_e(kind)}</span> "
                f"<span class=\"muted\">{_e(ERROR_KIND_TEXT.get(kind, ''))}</span>")
        if item.get("error"):
            text += f"<pre>{_e(cut_value(item['error'], TEXT_CHARS))}</pre>"
        return text
    if relation:
        return (f"<span class=\"badge relation\">{_e(relation)}</span> "
                f"<span class=\"muted\">{_e(RELATIONS.get(relation, ''))}</span>")
    return "<span class=\"muted\">different results</span>"


def _failing_row(item: dict[str, Any]) -> str:
    badges = "".join(f"<span class=\"badge\">{_e(b)}</span>" for b in
                     [item.get("difficulty"), *(item.get("features") or [])] if b)
    meta = f"<div class=\"muted mono\">{_e(item.get('db_id'))}</div>" if item.get("db_id") else ""
    return (f"<tr class=\"item\" data-id=\"{_e(item.get('id'))}\">"
            f"<td class=\"id mono\">{_e(item.get('id'))}</td>"
            f"<td>{_e(item.get('question'))}{meta}<div>{badges}</div></td>"
            f"<td><pre>{_e(cut_value(item.get('query'), TEXT_CHARS))}</pre>"
            f"{_preview('gold', item.get('gold_preview'), item.get('gold_rows'))}</td>"
            f"<td><pre>{_e(cut_value(item.get('prediction'), TEXT_CHARS))}</pre>"
            f"{_preview('predicted', item.get('pred_preview'), item.get('pred_rows'))}"
            f"{_vote(item.get('vote'))}</td>"
            f"<td>{_why(item)}</td></tr>")


def _vote(vote: dict[str, Any] | None) -> str:
    """How voting chose the prediction (infer.candidates), under it."""
    if not vote:
        return ""
    if vote.get("fallback"):
        text = f"voting: none of the {vote.get('candidates')} candidates ran; the greedy one kept"
    else:
        groups = " · ".join(str(g) for g in vote.get("groups") or [])
        text = (f"voting: candidate {vote.get('chosen')} of {vote.get('candidates')}, "
                f"groups of equal results {groups}")
    return f"<div class=\"muted vote\">{_e(text)}</div>"


def _failing(summary: EvaluationSummary, items: list[dict[str, Any]], limit: int) -> str:
    headline = summary.column
    if not items:
        return ("<h2>Failing items</h2><div class=\"empty\">Per-item results are not available "
                "for this run.</div>")
    mine = [i for i in items if headline is None or i.get("column", headline) == headline]
    failing = [i for i in mine if not i.get("execution_match")
               and i.get("error_kind") != "gold_failed"]
    gold_failed = sum(1 for i in mine if i.get("error_kind") == "gold_failed")
    intro = (f"<p class=\"sub\">{len(failing)} of {len(mine) - gold_failed} items "
             f"of column <code>{_e(headline or '?')}</code> give other results than the gold "
             f"SQL.")
    if gold_failed:
        intro += f" {gold_failed} whose gold SQL failed are left out."
    intro += "</p>"
    if not failing:
        return f"<h2>Failing items</h2>{intro}<div class=\"empty\">None: every item matches.</div>"
    rows = "".join(_failing_row(i) for i in failing[:limit])
    more = (f"<p class=\"muted more\">… and {len(failing) - limit} more failing items not shown "
            f"(see items.jsonl).</p>" if len(failing) > limit else "")
    return (f"<h2>Failing items</h2>{intro}<table class=\"grid failing\"><thead><tr>"
            "<th>id</th><th>Question</th><th>Gold SQL</th><th>Predicted SQL</th><th>Why</th>"
            f"</tr></thead><tbody>{rows}</tbody></table>{more}")


def render_run_report(summary: EvaluationSummary, items: list[dict[str, Any]], *,
                      title: str | None = None, run_name: str | None = None,
                      max_failing: int = MAX_FAILING) -> str:
    """One evaluation run as a self-contained HTML page.

    Args:
        summary: the run's summary (``summary.json``).
        items: the per-item results (``items.jsonl``), of every scored column.
        title: the page heading; by default the model preset, adapter (or base model),
            dataset and ``run_name`` (the run folder's name).
        max_failing: how many failing items to list; the rest are counted.
    """
    heading = title or f"Evaluation: {run_label(summary, run_name)}"
    subtitle = " · ".join(_e(x) for x in (f"column {summary.column or '?'}",
                                          summary.predictions and
                                          f"predictions {short_name(summary.predictions)}")
                          if x)
    by_difficulty, by_feature = summary.by_difficulty, summary.by_feature
    feature_order = sorted(by_feature, key=lambda f: (-(by_feature[f] or {}).get("count", 0), f))
    charts = "".join([
        bar_chart("Execution accuracy by difficulty",
                  _accuracy_bars(by_difficulty,
                                 [*HARDNESS_LEVELS,
                                  *sorted(set(by_difficulty) - set(HARDNESS_LEVELS))]),
                  percent=True, chart_id="difficulty"),
        bar_chart("Execution accuracy by SQL feature", _accuracy_bars(by_feature, feature_order),
                  percent=True, chart_id="feature"),
        bar_chart("Errors by kind", _count_bars(dict(summary.errors)), percent=False,
                  chart_id="errors"),
        # Wrong results only: "same" is a correct item (older summaries counted it).
        bar_chart("Results of valid but wrong SQL, by relation to the gold result",
                  _count_bars({k: v for k, v in summary.relations.items()
                               if k != "same"}), percent=False, chart_id="relations"),
    ])
    caveat = ""
    if _small_buckets(by_difficulty, by_feature):
        caveat = (f"<p class=\"muted caveat\">* fewer than {SMALL_SAMPLE} items: a small "
                   "sample, its accuracy says little.</p>")
    body = (f"<h1>{_e(heading)}</h1><p class=\"sub\">{subtitle}</p>"
            f"{_cards(summary)}{_meta(summary)}{_columns_table(summary)}"
            f"<h2>Breakdown</h2><div class=\"charts\">{charts}</div>{caveat}"
            f"{_failing(summary, items, max_failing)}")
    return _page(heading, body)


def _when(value: Any) -> str:
    return str(value or "").replace("T", " ")[:16] or "—"


def _ex_key(run: dict[str, Any]) -> float:
    value = run["summary"].execution_accuracy
    return float(value) if isinstance(value, (int, float)) else -1.0


# Sorts the leaderboard by the clicked column (numbers by data-v, text by content); a second
# click reverses. Inline, a few lines: the page stays one file that fetches nothing.
SORT_SCRIPT = """
document.querySelectorAll("table.sortable").forEach(function (table) {
  table.querySelectorAll("th").forEach(function (th, col) {
    th.addEventListener("click", function () {
      var up = th.getAttribute("aria-sort") !== "ascending";
      table.querySelectorAll("th").forEach(function (h) { h.removeAttribute("aria-sort"); });
      th.setAttribute("aria-sort", up ? "ascending" : "descending");
      var body = table.tBodies[0], rows = Array.from(body.rows);
      var key = function (row) {
        var cell = row.cells[col], v = cell.getAttribute("data-v");
        return v !== null ? parseFloat(v) : cell.textContent.trim().toLowerCase();
      };
      rows.sort(function (a, b) {
        var x = key(a), y = key(b);
        if (typeof x === "number" && isNaN(x)) { x = -Infinity; }
        if (typeof y === "number" && isNaN(y)) { y = -Infinity; }
        return (x < y ? -1 : x > y ? 1 : 0) * (up ? 1 : -1);
      });
      rows.forEach(function (row) { body.appendChild(row); });
    });
  });
});
"""


def _num(value: Any) -> str:
    """A cell's sort key (data-v): the number, or empty for a missing one."""
    return str(value) if isinstance(value, (int, float)) and not isinstance(value, bool) \
        else "NaN"


def render_leaderboard(runs: list[dict[str, Any]]) -> str:
    """Every evaluation run as one row, best execution accuracy first; click a column's
    heading to sort by it.

    Args:
        runs: one dict per run: ``name`` (a stable id, e.g. the run folder relative to the
            output folder), ``when`` (finish time, ISO), ``summary`` (its summary) and
            ``report`` (relative link to its report.html, or None).
    """
    ordered = sorted(runs, key=lambda r: (_ex_key(r), str(r.get("when") or "")), reverse=True)
    rows = []
    small = 0
    for rank, run in enumerate(ordered, 1):
        s: EvaluationSummary = run["summary"]
        link = (f"<a href=\"{_e(run['report'])}\">report</a>" if run.get("report") else "—")
        count = s.items
        few = isinstance(count, int) and count < SMALL_SAMPLE
        small += few
        rows.append(
            f"<tr class=\"run\" data-run=\"{_e(run.get('name'))}\">"
            f"<td class=\"num\" data-v=\"{rank}\">{rank}</td>"
            f"<td class=\"mono\">{_e(_when(run.get('when')))}</td>"
            f"<td class=\"name\">{_e(run.get('name') or '—')}</td>"
            f"<td class=\"model\">{_e(model_label(s))}</td>"
            f"<td>{_e(adapter_label(s))}</td>"
            f"<td>{_e(dataset_label(s))}</td><td>{_e(s.column or '—')}</td>"
            f"<td class=\"num ex\" data-v=\"{_num(s.execution_accuracy)}\">"
            f"{_pct(s.execution_accuracy)}</td>"
            f"<td class=\"num\" data-v=\"{_num(s.exact_match)}\">{_pct(s.exact_match)}</td>"
            f"<td class=\"num\" data-v=\"{_num(s.token_match)}\">{_pct(s.token_match)}</td>"
            f"<td class=\"num\" data-v=\"{_num(s.valid_sql_rate)}\">"
            f"{_pct(s.valid_sql_rate)}</td>"
            f"<td class=\"num\" data-v=\"{_num(count)}\">{_e('—' if count is None else count)}"
            f"{'*' if few else ''}</td><td>{link}</td></tr>")
    if rows:
        table = ("<table class=\"grid leaderboard sortable\"><colgroup>"
                 "<col class=\"narrow\"><col class=\"when\"><col class=\"wide\">"
                 "<col class=\"wide\"><col><col><col class=\"narrow\">"
                 + "<col class=\"narrow\">" * 5 + "<col class=\"narrow\"></colgroup>"
                 "<thead><tr><th class=\"num\">#</th>"
                 "<th>When</th><th>Run</th><th>Model</th><th>Adapter</th><th>Dataset</th>"
                 "<th>Column</th><th class=\"num\">EX</th><th class=\"num\">EM</th>"
                 "<th class=\"num\">Token</th><th class=\"num\">Valid SQL</th>"
                 "<th class=\"num\">Items</th><th>Report</th>"
                 f"</tr></thead><tbody>{''.join(rows)}</tbody></table>")
    else:
        table = "<div class=\"empty\">No evaluation runs.</div>"
    caveat = (f"<p class=\"muted caveat\">* fewer than {SMALL_SAMPLE} items: a small sample, "
              "its accuracy says little.</p>" if small else "")
    bars = [(f"{model_label(r['summary'])} · {r.get('name') or _when(r.get('when'))}",
             max(_ex_key(r), 0.0), _pct(r["summary"].execution_accuracy))
            for r in ordered[:30]]
    chart = bar_chart("Execution accuracy by run", bars, percent=True, chart_id="leaderboard")
    body = ("<h1>QueryCraft leaderboard</h1>"
            f"<p class=\"sub\">{len(ordered)} evaluation run{'s' if len(ordered) != 1 else ''}, "
            "best execution accuracy (EX) first; click a column's heading to sort by it. "
            "EM: exact match; Token: token match.</p>"
            f"{table}{caveat}<h2>Execution accuracy</h2><div class=\"charts\">{chart}</div>"
            f"<script>{SORT_SCRIPT}</script>")
    return _page("QueryCraft leaderboard", body)
