"""Generate QueryCraft's synthetic sample data: a shop database and a text-to-SQL CSV.

Writes two files into the output folder (default: this script's folder):

* ``shop.sqlite``: a small synthetic business database (customers, addresses,
  contacts, products, orders, order items) with declared primary and foreign keys.
* ``shop.csv``: text-to-SQL examples with the columns ``question,query,context,db_id``
  (IBM QueryCraft's layout). Each row is a query shape (a template) filled with values
  drawn from the database and worded in one of several ways people word it: values
  unquoted, everyday words for column names, questions that name no column. ``context`` is
  the whole schema exactly as QueryCraft renders it at ask/serve time (never only the
  tables the gold query uses, which no user has when asking), and every gold query runs on
  ``shop.sqlite`` with a non-empty result (and no tie at an ``ORDER BY ... LIMIT``).

Everything is drawn from one seed, so two runs with the same seed give a
byte-identical CSV and a database with identical content.

Run it from the repository root::

    python input/sample/make_sample_data.py     # seed 7, writes next to this script
    python input/sample/make_sample_data.py --seed 7 --out /tmp/sample

The standard library, and QueryCraft's own schema reader for the context (so the project
must be installed: ``pip install -e .``).
"""

from __future__ import annotations

import argparse
import csv
import itertools
import random
import re
import sqlite3
from collections.abc import Callable, Sequence
from datetime import date, timedelta
from pathlib import Path
from typing import NamedTuple

DEFAULT_SEED = 7
DB_ID = "shop"
CSV_COLUMNS = ("question", "query", "context", "db_id")
PER_TEMPLATE = 6
MIN_QUESTION_WORDS = 4
MAX_QUESTION_WORDS = 25

N_CUSTOMERS = 60
N_ADDRESSES = 100
N_CONTACTS = 150
N_ORDERS = 300
N_ORDER_ITEMS = 700
N_CUSTOMERS_WITHOUT_ORDERS = 5

FIRST_DAY = date(2023, 1, 1)
LAST_SIGNUP_DAY = date(2025, 6, 30)
LAST_DAY = date(2025, 12, 31)
YEARS = ("2023", "2024", "2025")

# ---------------------------------------------------------------------------
# Schema: one spec drives both the database DDL and the per-row contexts.
# ---------------------------------------------------------------------------

# table -> (columns as (name, type), foreign keys as (column, ref table, ref column))
SCHEMA: dict[
    str, tuple[tuple[tuple[str, str], ...], tuple[tuple[str, str, str], ...]]
] = {
    "customer": (
        (
            ("customer_id", "INTEGER PRIMARY KEY"),
            ("first_name", "TEXT"),
            ("last_name", "TEXT"),
            ("email", "TEXT"),
            ("phone", "TEXT"),
            ("signup_date", "TEXT"),
            ("segment", "TEXT"),
        ),
        (),
    ),
    "address": (
        (
            ("address_id", "INTEGER PRIMARY KEY"),
            ("customer_id", "INTEGER"),
            ("street", "TEXT"),
            ("city", "TEXT"),
            ("country", "TEXT"),
            ("postal_code", "TEXT"),
            ("address_type", "TEXT"),
        ),
        (("customer_id", "customer", "customer_id"),),
    ),
    "contact": (
        (
            ("contact_id", "INTEGER PRIMARY KEY"),
            ("customer_id", "INTEGER"),
            ("channel", "TEXT"),
            ("contact_date", "TEXT"),
            ("outcome", "TEXT"),
        ),
        (("customer_id", "customer", "customer_id"),),
    ),
    "product": (
        (
            ("product_id", "INTEGER PRIMARY KEY"),
            ("name", "TEXT"),
            ("category", "TEXT"),
            ("unit_price", "REAL"),
        ),
        (),
    ),
    "orders": (
        (
            ("order_id", "INTEGER PRIMARY KEY"),
            ("customer_id", "INTEGER"),
            ("order_date", "TEXT"),
            ("status", "TEXT"),
            ("total_amount", "REAL"),
            ("shipping_address_id", "INTEGER"),
        ),
        (
            ("customer_id", "customer", "customer_id"),
            ("shipping_address_id", "address", "address_id"),
        ),
    ),
    "order_item": (
        (
            ("order_item_id", "INTEGER PRIMARY KEY"),
            ("order_id", "INTEGER"),
            ("product_id", "INTEGER"),
            ("quantity", "INTEGER"),
        ),
        (
            ("order_id", "orders", "order_id"),
            ("product_id", "product", "product_id"),
        ),
    ),
}
TABLE_ORDER = tuple(SCHEMA)


def create_table_sql(table: str, available: Sequence[str] = TABLE_ORDER) -> str:
    """One-line CREATE TABLE, no ';'; FK clauses only to tables in ``available``."""
    columns, foreign_keys = SCHEMA[table]
    parts = [f"{name} {sql_type}" for name, sql_type in columns]
    parts += [
        f"FOREIGN KEY ({column}) REFERENCES {ref_table} ({ref_column})"
        for column, ref_table, ref_column in foreign_keys
        if ref_table in available
    ]
    return f"CREATE TABLE {table} ({', '.join(parts)})"


def schema_context(db_path: Path) -> str:
    """The schema as QueryCraft renders it for any question about ``db_path``: what
    ``service=ask`` and ``serve`` put in the prompt (ingest's reader with its defaults,
    ``ingest.context_tables=all`` and ``db.sample_values=0``). Every row carries it, so the
    model trains on the very prompt it is asked in, and nothing in the context points at the
    tables the gold query uses."""
    from querycraft.schema import read_schema

    return read_schema(db_path)


# ---------------------------------------------------------------------------
# Fixed vocabularies (all synthetic).
# ---------------------------------------------------------------------------

FIRST_NAMES = (
    "Alice", "Bruno", "Chloe", "Daniel", "Elena", "Felix", "Grace", "Hugo",
    "Ines", "Jonas", "Karin", "Lucas", "Maya", "Nico", "Olivia", "Pablo",
    "Rosa", "Samir", "Tara", "Victor", "Wendy", "Yusuf", "Zoe", "Marta",
    "Leon", "Nora", "Oscar", "Paula", "Ravi", "Sofia",
)  # fmt: skip
LAST_NAMES = (
    "Martin", "Bernard", "Moreau", "Laurent", "Fischer", "Weber", "Becker",
    "Garcia", "Lopez", "Romero", "Rossi", "Ricci", "Costa", "Silva", "Santos",
    "Jansen", "Visser", "Murphy", "Walsh", "Peeters", "Dubois", "Novak",
    "Keller", "Hansen", "Bauer", "Ferrari", "Marino", "Ortega", "Mendes", "Kelly",
)  # fmt: skip
EMAIL_DOMAINS = ("example.com", "example.org", "example.net")
SEGMENTS = ("consumer", "corporate", "small business")
SEGMENT_WEIGHTS = (6, 3, 2)
CITIES = (
    ("Lyon", "France"), ("Paris", "France"), ("Marseille", "France"),
    ("Berlin", "Germany"), ("Hamburg", "Germany"),
    ("Madrid", "Spain"), ("Valencia", "Spain"),
    ("Milan", "Italy"), ("Turin", "Italy"),
    ("Porto", "Portugal"), ("Lisbon", "Portugal"),
    ("Utrecht", "Netherlands"), ("Cork", "Ireland"), ("Ghent", "Belgium"),
)  # fmt: skip
STREETS = (
    "Oak Street", "Maple Avenue", "Station Road", "Church Lane", "Market Square",
    "River Road", "Hill Street", "Park Avenue", "Mill Lane", "Bridge Street",
)  # fmt: skip
CHANNELS = ("email", "phone", "chat")
CHANNEL_WEIGHTS = (5, 3, 2)
OUTCOMES = ("resolved", "follow-up", "no answer", "escalated")
OUTCOME_WEIGHTS = (5, 3, 2, 1)
STATUSES = ("shipped", "pending", "cancelled", "delivered")
STATUS_WEIGHTS = (3, 1, 1, 5)
PRODUCTS = (
    ("Wireless Mouse", "electronics", 24.99),
    ("Mechanical Keyboard", "electronics", 89.5),
    ("USB Hub", "electronics", 39.9),
    ("Noise Cancelling Headphones", "electronics", 199.0),
    ("HD Webcam", "electronics", 59.0),
    ("Notebook A5", "office", 4.5),
    ("Gel Pen Pack", "office", 7.99),
    ("Desk Organizer", "office", 19.9),
    ("Heavy Duty Stapler", "office", 12.5),
    ("Paper Ream", "office", 8.75),
    ("Office Chair", "furniture", 249.0),
    ("Standing Desk", "furniture", 429.0),
    ("Oak Bookshelf", "furniture", 119.0),
    ("Desk Lamp", "furniture", 34.9),
    ("Filing Cabinet", "furniture", 159.0),
    ("Coffee Maker", "kitchen", 79.0),
    ("Electric Kettle", "kitchen", 39.0),
    ("Water Bottle", "kitchen", 14.5),
    ("Travel Mug", "kitchen", 17.9),
    ("Espresso Cup Set", "kitchen", 22.0),
    ("SQL Fundamentals", "books", 39.5),
    ("Data Modeling Guide", "books", 44.0),
    ("Python Cookbook", "books", 49.9),
    ("Statistics Primer", "books", 29.0),
    ("Office Design Patterns", "books", 54.0),
)


# ---------------------------------------------------------------------------
# Database generation.
# ---------------------------------------------------------------------------

Row = tuple[object, ...]


def random_day(rng: random.Random, start: date, end: date) -> date:
    """A uniformly random day in [start, end]."""
    return start + timedelta(days=rng.randint(0, (end - start).days))


def generate_rows(seed: int) -> dict[str, list[Row]]:
    """All table rows, keyed by table name, drawn deterministically from ``seed``."""
    rng = random.Random(seed)

    customers: list[Row] = []
    names = rng.sample([(f, s) for f in FIRST_NAMES for s in LAST_NAMES], N_CUSTOMERS)
    signup: dict[int, date] = {}
    for customer_id, (first, last) in enumerate(names, start=1):
        email = f"{first.lower()}.{last.lower()}@{rng.choice(EMAIL_DOMAINS)}"
        phone = f"555-{rng.randint(1000, 9999)}"
        signup[customer_id] = random_day(rng, FIRST_DAY, LAST_SIGNUP_DAY)
        customers.append(
            (
                customer_id,
                first,
                last,
                None if rng.random() < 0.15 else email,
                None if rng.random() < 0.25 else phone,
                signup[customer_id].isoformat(),
                rng.choices(SEGMENTS, weights=SEGMENT_WEIGHTS)[0],
            )
        )
    customer_ids = list(signup)

    # Every customer gets a billing address; the rest are extra shipping addresses.
    owners = [(cid, "billing") for cid in customer_ids]
    owners += [
        (rng.choice(customer_ids), "shipping") for _ in range(N_ADDRESSES - N_CUSTOMERS)
    ]
    rng.shuffle(owners)
    addresses: list[Row] = []
    addresses_of: dict[int, list[int]] = {cid: [] for cid in customer_ids}
    for address_id, (cid, address_type) in enumerate(owners, start=1):
        city, country = rng.choice(CITIES)
        street = f"{rng.randint(1, 199)} {rng.choice(STREETS)}"
        postal = None if rng.random() < 0.15 else f"{rng.randint(10000, 99999)}"
        addresses.append((address_id, cid, street, city, country, postal, address_type))
        addresses_of[cid].append(address_id)

    products: list[Row] = [
        (product_id, name, category, price)
        for product_id, (name, category, price) in enumerate(PRODUCTS, start=1)
    ]
    price_of = {pid: price for pid, (_, _, price) in enumerate(PRODUCTS, start=1)}

    # A few customers never order, so "customers without orders" questions have answers.
    no_orders = set(rng.sample(customer_ids, N_CUSTOMERS_WITHOUT_ORDERS))
    buyers = [cid for cid in customer_ids if cid not in no_orders]
    drafts = []
    for _ in range(N_ORDERS):
        cid = rng.choice(buyers)
        day = random_day(rng, signup[cid], LAST_DAY)
        status = rng.choices(STATUSES, weights=STATUS_WEIGHTS)[0]
        ship_to = None if rng.random() < 0.1 else rng.choice(addresses_of[cid])
        drafts.append((day.isoformat(), cid, status, ship_to))
    drafts.sort(key=lambda d: (d[0], d[1]))

    item_counts = [1] * N_ORDERS
    for _ in range(N_ORDER_ITEMS - N_ORDERS):
        index = rng.choice([i for i, n in enumerate(item_counts) if n < 6])
        item_counts[index] += 1

    orders: list[Row] = []
    order_items: list[Row] = []
    for order_id, ((day_text, cid, status, ship_to), count) in enumerate(
        zip(drafts, item_counts, strict=True), start=1
    ):
        total = 0.0
        for product_id in sorted(rng.sample(list(price_of), count)):
            quantity = rng.choices((1, 2, 3, 4, 5), weights=(5, 3, 2, 1, 1))[0]
            total += quantity * price_of[product_id]
            order_items.append((len(order_items) + 1, order_id, product_id, quantity))
        orders.append((order_id, cid, day_text, status, round(total, 2), ship_to))

    contact_drafts = []
    for _ in range(N_CONTACTS):
        cid = rng.choice(customer_ids)
        day = random_day(rng, signup[cid], LAST_DAY)
        channel = rng.choices(CHANNELS, weights=CHANNEL_WEIGHTS)[0]
        outcome = rng.choices(OUTCOMES, weights=OUTCOME_WEIGHTS)[0]
        contact_drafts.append((day.isoformat(), cid, channel, outcome))
    contact_drafts.sort(key=lambda d: (d[0], d[1]))
    contacts: list[Row] = [
        (contact_id, cid, channel, day_text, outcome)
        for contact_id, (day_text, cid, channel, outcome) in enumerate(
            contact_drafts, start=1
        )
    ]

    return {
        "customer": customers,
        "address": addresses,
        "contact": contacts,
        "product": products,
        "orders": orders,
        "order_item": order_items,
    }


def build_database(path: Path, seed: int) -> None:
    """Create ``path`` (replacing any existing file) and fill it from ``seed``."""
    path.unlink(missing_ok=True)
    rows = generate_rows(seed)
    conn = sqlite3.connect(path)
    try:
        conn.execute("PRAGMA foreign_keys = ON")
        for table in TABLE_ORDER:
            conn.execute(create_table_sql(table))
        for table in TABLE_ORDER:
            placeholders = ", ".join("?" * len(SCHEMA[table][0]))
            conn.executemany(
                f"INSERT INTO {table} VALUES ({placeholders})", rows[table]
            )
        conn.commit()
        problems = conn.execute("PRAGMA foreign_key_check").fetchall()
        if problems:
            raise RuntimeError(f"foreign key violations: {problems[:5]}")
    finally:
        conn.close()


# ---------------------------------------------------------------------------
# Question templates.
# ---------------------------------------------------------------------------

Params = dict[str, object]


class Template(NamedTuple):
    """A question/SQL pattern; ``space`` lists the parameter sets to fill it with."""

    name: str
    sql: str
    phrasings: tuple[str, ...]
    space: Callable[[Values], list[Params]]


class Values(NamedTuple):
    """Values drawn from the generated database that templates may mention."""

    customers: list[tuple[int, str, str]]
    last_names: list[str]
    letters: list[str]
    cities: list[str]
    countries: list[str]
    categories: list[str]
    product_names: list[str]
    name_words: list[str]
    order_ids: list[int]
    phones: list[str]

    @classmethod
    def from_db(cls, conn: sqlite3.Connection) -> Values:
        def column(sql: str) -> list:
            return [row[0] for row in conn.execute(sql)]

        product_names = column("SELECT name FROM product ORDER BY product_id")
        words = sorted(
            {w for name in product_names for w in name.split() if len(w) >= 4}
        )
        return cls(
            customers=list(
                conn.execute(
                    "SELECT customer_id, first_name, last_name FROM customer ORDER BY "
                    "customer_id"
                )
            ),
            last_names=column(
                "SELECT DISTINCT last_name FROM customer ORDER BY last_name"
            ),
            letters=column(
                "SELECT DISTINCT substr(last_name, 1, 1) FROM customer ORDER BY 1"
            ),
            cities=column("SELECT DISTINCT city FROM address ORDER BY city"),
            countries=column("SELECT DISTINCT country FROM address ORDER BY country"),
            categories=column(
                "SELECT DISTINCT category FROM product ORDER BY category"
            ),
            product_names=product_names,
            name_words=words,
            order_ids=column("SELECT order_id FROM orders ORDER BY order_id"),
            phones=column(
                "SELECT phone FROM customer WHERE phone IS NOT NULL ORDER BY customer_id"
            ),
        )


def grid(**axes: Sequence[object]) -> list[Params]:
    """Cartesian product of named value lists, as parameter dicts."""
    keys = list(axes)
    return [
        dict(zip(keys, combo, strict=True))
        for combo in itertools.product(*axes.values())
    ]


def expand(
    params: list[Params], key: str, mapping: dict[object, Params]
) -> list[Params]:
    """Add the fields in ``mapping[p[key]]`` to every parameter dict ``p``."""
    return [{**p, **mapping[p[key]]} for p in params]


PRICES = (10, 15, 20, 25, 30, 40, 50, 60, 75, 100, 150, 200, 250)
AMOUNTS = (100, 150, 200, 250, 300, 400, 500, 750, 1000)
SPEND = (500, 750, 1000, 1500, 2000, 2500, 3000, 4000, 5000, 6000)
TOP_N = tuple(range(2, 11))
NULLABLE = {
    "email": {"col_text": "email address"},
    "phone": {"col_text": "phone number"},
}
PRICE_AGG = {
    "AVG": {"agg_text": "average"},
    "MIN": {"agg_text": "lowest"},
    "MAX": {"agg_text": "highest"},
}
AMOUNT_AGG = {
    "AVG": {"agg_text": "average"},
    "MIN": {"agg_text": "smallest"},
    "MAX": {"agg_text": "largest"},
    "SUM": {"agg_text": "combined"},
}
PRICE_ORDER = {"DESC": {"adj": "most expensive"}, "ASC": {"adj": "cheapest"}}
SIGNUP_ORDER = {"ASC": {"adj": "earliest"}, "DESC": {"adj": "latest"}}


def month_ranges() -> list[Params]:
    out: list[Params] = []
    for year in (2023, 2024, 2025):
        for month in range(1, 13):
            start = date(year, month, 1)
            end = (date(year + month // 12, month % 12 + 1, 1)) - timedelta(days=1)
            out.append({"start": start.isoformat(), "end": end.isoformat()})
    return out


def quarter_ranges() -> list[Params]:
    out: list[Params] = []
    for year in (2023, 2024, 2025):
        for first_month, last_day in (
            (1, "03-31"),
            (4, "06-30"),
            (7, "09-30"),
            (10, "12-31"),
        ):
            out.append(
                {"start": f"{year}-{first_month:02d}-01", "end": f"{year}-{last_day}"}
            )
    return out


def price_pairs() -> list[Params]:
    return [
        {"lo": lo, "hi": hi}
        for lo, hi in itertools.combinations(PRICES, 2)
        if hi <= 4 * lo
    ]


def city_pairs(v: Values) -> list[Params]:
    return [{"c1": a, "c2": b} for a, b in itertools.combinations(v.cities, 2)]


def people(v: Values) -> list[Params]:
    return [{"first": first, "last": last} for _, first, last in v.customers]


def customer_ids(v: Values) -> list[Params]:
    return [{"cid": cid} for cid, _, _ in v.customers]


def signup_cutoffs() -> list[Params]:
    return [{"date": f"2025-{m:02d}-{d:02d}"} for m in range(1, 7) for d in (1, 15)]


# What people call each table's rows, for questions that name no column.
TABLE_NOUNS = {
    "customer": {"noun": "customers"},
    "address": {"noun": "addresses"},
    "contact": {"noun": "customer contacts"},
    "product": {"noun": "products"},
    "orders": {"noun": "orders"},
    "order_item": {"noun": "order lines"},
}

# Phrasings are written to vary as people's questions do: several per query shape, values
# unquoted, the schema's words replaced by everyday ones (surname, cost, spent, joined,
# bought), and questions that name no column at all, so that a model trained on them has to
# learn the schema rather than one wording per template.
T = Template
TEMPLATES: tuple[Template, ...] = (
    # --- whole tables and single facts ------------------------------------------------
    T(
        "count_rows",
        "SELECT COUNT(*) FROM {table}",
        (
            "How many {noun} are there?",
            "How many {noun} do we have?",
            "What is the total number of {noun}?",
            "Give me the number of {noun} in the database.",
            "Count the {noun} we have on record.",
        ),
        lambda v: expand(grid(table=list(TABLE_NOUNS)), "table", TABLE_NOUNS),
    ),
    T(
        "customer_email_by_name",
        "SELECT email FROM customer WHERE first_name = '{first}' AND last_name = "
        "'{last}'",
        (
            "What is the email address of {first} {last}?",
            "How can I email {first} {last}?",
            "Find the email for {first} {last}.",
            "What's {first} {last}'s email?",
            "Which address do we use to email {first} {last}?",
        ),
        people,
    ),
    T(
        "signup_date_of_person",
        "SELECT signup_date FROM customer WHERE first_name = '{first}' AND last_name = "
        "'{last}'",
        (
            "When did {first} {last} sign up?",
            "When did {first} {last} become a customer?",
            "On what date did {first} {last} join?",
            "Since when has {first} {last} been with us?",
            "What is the registration date of {first} {last}?",
        ),
        people,
    ),
    T(
        "customer_by_phone",
        "SELECT first_name, last_name FROM customer WHERE phone = '{phone}'",
        (
            "Who has the phone number {phone}?",
            "Whose number is {phone}?",
            "Which customer can be reached at {phone}?",
            "Find the customer with phone {phone}.",
            "I got a call from {phone}, who is that?",
        ),
        lambda v: [{"phone": phone} for phone in v.phones],
    ),
    T(
        "customers_in_segment",
        "SELECT first_name, last_name FROM customer WHERE segment = '{segment}'",
        (
            "Who are our {segment} customers?",
            "List the {segment} customers.",
            "Which customers belong to the {segment} segment?",
            "Show me everyone in the {segment} segment.",
            "Name all of our {segment} clients.",
        ),
        lambda v: grid(segment=SEGMENTS),
    ),
    T(
        "customer_phone_by_last_name",
        "SELECT first_name, phone FROM customer WHERE last_name = '{last}'",
        (
            "List the first names and phone numbers of customers named {last}.",
            "What are the phone numbers of the {last} family, with first names?",
            "Give me first name and phone of everyone with surname {last}.",
            "How do I call customers called {last}? Show their first names too.",
            "Phone numbers and given names of customers whose family name is {last}?",
        ),
        lambda v: [{"last": last} for last in v.last_names],
    ),
    T(
        "product_price_by_name",
        "SELECT unit_price FROM product WHERE name = '{product}'",
        (
            "How much does the {product} cost?",
            "What is the price of the {product}?",
            "What do we charge for a {product}?",
            "Tell me what the {product} sells for.",
            "How expensive is the {product}?",
        ),
        lambda v: grid(product=v.product_names),
    ),
    T(
        "products_in_category",
        "SELECT name FROM product WHERE category = '{category}'",
        (
            "What do we sell in {category}?",
            "List the {category} products.",
            "Which items are in the {category} category?",
            "Show everything we offer under {category}.",
            "Name our {category} articles.",
        ),
        lambda v: grid(category=v.categories),
    ),
    T(
        "status_of_order",
        "SELECT status FROM orders WHERE order_id = {oid}",
        (
            "What is the status of order {oid}?",
            "Where does order {oid} stand?",
            "Tell me the current state of order number {oid}.",
            "Has order {oid} shipped, been delivered or been cancelled?",
            "Order {oid}: what status is it in?",
        ),
        lambda v: grid(oid=v.order_ids),
    ),
    # --- plain selection and filters --------------------------------------------------
    T(
        "products_in_category_below_price",
        "SELECT name FROM product WHERE category = '{category}' AND unit_price < "
        "{price}",
        (
            "Which {category} products cost less than {price}?",
            "List the {category} products with a unit price below {price}.",
            "What can I buy in {category} for under {price}?",
            "Cheap {category} items: which ones are below {price}?",
            "Name {category} articles priced lower than {price}.",
        ),
        lambda v: grid(category=v.categories, price=PRICES),
    ),
    T(
        "products_above_price",
        "SELECT name, unit_price FROM product WHERE unit_price > {price}",
        (
            "Which products cost more than {price}? Include the prices.",
            "List products with a unit price above {price}, with their prices.",
            "What do we sell for over {price}, and at what price?",
            "Show the expensive items, those above {price}, and what they cost.",
            "Products pricier than {price} and their prices, please.",
        ),
        lambda v: grid(price=PRICES),
    ),
    T(
        "products_below_price",
        "SELECT name FROM product WHERE unit_price < {price}",
        (
            "Which products cost less than {price}?",
            "Name the products with a unit price below {price}.",
            "What can a customer buy for less than {price}?",
            "Which items are cheaper than {price}?",
            "List everything we sell under {price}.",
        ),
        lambda v: grid(price=PRICES),
    ),
    T(
        "products_price_between",
        "SELECT name, unit_price FROM product WHERE unit_price BETWEEN {lo} AND {hi}",
        (
            "Which products have a unit price between {lo} and {hi}?",
            "List products priced from {lo} to {hi}, with prices.",
            "What costs somewhere between {lo} and {hi}? Show the prices.",
            "Items in the {lo} to {hi} price range and what they cost?",
            "Show names and prices of products costing {lo} to {hi}.",
        ),
        lambda v: price_pairs(),
    ),
    T(
        "customers_last_name_starts_with",
        "SELECT first_name, last_name FROM customer WHERE last_name LIKE '{letter}%'",
        (
            "Which customers have a last name starting with {letter}?",
            "List customers whose surname begins with the letter {letter}.",
            "Who are the customers with a family name that starts with {letter}?",
            "Full names of clients whose last name begins with {letter}?",
            "Show customers whose surname starts with {letter}.",
        ),
        lambda v: grid(letter=v.letters),
    ),
    T(
        "products_name_contains",
        "SELECT name FROM product WHERE name LIKE '%{word}%'",
        (
            "Which products have {word} in their name?",
            "List all products whose name contains {word}.",
            "Do we sell anything called {word}? List those products.",
            "Find items with the word {word} in the name.",
            "Search the products for {word}.",
        ),
        lambda v: grid(word=v.name_words),
    ),
    T(
        "addresses_in_two_cities",
        "SELECT street, city FROM address WHERE city IN ('{c1}', '{c2}')",
        (
            "List the streets and cities of addresses in {c1} or {c2}.",
            "Which street addresses do we have in {c1} and {c2}?",
            "Show the addresses in either {c1} or {c2}, street and city.",
            "What streets in {c1} or {c2} appear in our addresses, with the city?",
            "Give street and city for every address located in {c1} or {c2}.",
        ),
        city_pairs,
    ),
    T(
        "orders_by_status_above_amount",
        "SELECT order_id, total_amount FROM orders WHERE status = '{status}' AND "
        "total_amount > {amount}",
        (
            "Show {status} orders with a total amount above {amount}.",
            "Which {status} orders are worth more than {amount}?",
            "List the ids and totals of {status} orders over {amount}.",
            "Big {status} orders: which ones exceed {amount}, and by how much in total?",
            "Find {status} purchases with a value above {amount}, with their totals.",
        ),
        lambda v: grid(status=STATUSES, amount=AMOUNTS),
    ),
    T(
        "orders_of_customer",
        "SELECT order_id, order_date FROM orders WHERE customer_id = {cid}",
        (
            "List the orders and order dates of customer {cid}.",
            "What has customer {cid} ordered, and when? Give the order ids.",
            "When did customer {cid} place orders? Show ids and dates.",
            "Show the order history of customer number {cid}.",
            "Which orders belong to customer {cid}, with their dates?",
        ),
        customer_ids,
    ),
    T(
        "count_orders_of_customer",
        "SELECT COUNT(*) FROM orders WHERE customer_id = {cid}",
        (
            "How many orders did customer {cid} place?",
            "How often has customer {cid} bought from us?",
            "Number of purchases made by customer {cid}?",
            "Count the orders of client {cid}.",
            "How many times did customer {cid} order?",
        ),
        customer_ids,
    ),
    T(
        "last_order_of_customer",
        "SELECT MAX(order_date) FROM orders WHERE customer_id = {cid}",
        (
            "When did customer {cid} last order?",
            "What is the most recent order date of customer {cid}?",
            "When was customer {cid}'s latest purchase?",
            "Date of the last order from customer {cid}?",
            "How recently has customer {cid} bought something?",
        ),
        customer_ids,
    ),
    # --- DISTINCT ---------------------------------------------------------------------
    T(
        "distinct_cities_in_country",
        "SELECT DISTINCT city FROM address WHERE country = '{country}'",
        (
            "Which cities in {country} do we have addresses in?",
            "List the distinct cities of addresses in {country}.",
            "What different cities appear in addresses from {country}?",
            "Where in {country} are our customers' addresses? Cities only, no repeats.",
            "Name each city in {country} that appears in an address.",
        ),
        lambda v: grid(country=v.countries),
    ),
    T(
        "distinct_categories_above_price",
        "SELECT DISTINCT category FROM product WHERE unit_price > {price}",
        (
            "Which product categories have products priced above {price}?",
            "In which categories can something cost more than {price}?",
            "What categories include at least one item over {price}?",
            "List each category, once, that has a product pricier than {price}.",
            "Which kinds of products go above {price}?",
        ),
        lambda v: grid(price=PRICES),
    ),
    # --- NULL handling ----------------------------------------------------------------
    T(
        "customers_missing_info",
        "SELECT first_name, last_name FROM customer WHERE {col} IS NULL AND segment = "
        "'{segment}'",
        (
            "Which {segment} customers have no {col_text} on file?",
            "List {segment} customers whose {col_text} is missing.",
            "We lack the {col_text} of some {segment} customers: who are they?",
            "Who in the {segment} segment has not given us any {col_text}?",
            "Names of {segment} clients without any {col_text}?",
        ),
        lambda v: expand(grid(col=list(NULLABLE), segment=SEGMENTS), "col", NULLABLE),
    ),
    T(
        "customers_with_info_by_year",
        "SELECT first_name, last_name, {col} FROM customer "
        "WHERE {col} IS NOT NULL AND strftime('%Y', signup_date) = '{year}'",
        (
            "List customers who signed up in {year} and have a known {col_text}.",
            "Which customers that joined in {year} have their {col_text} recorded? Show it.",
            "Show the known {col_text} of customers who registered in {year}.",
            "For customers acquired in {year}, give name and {col_text} where we have one.",
            "Names and {col_text} of {year} sign-ups, leaving out those without one.",
        ),
        lambda v: expand(grid(col=list(NULLABLE), year=YEARS), "col", NULLABLE),
    ),
    T(
        "count_known_info_by_segment",
        "SELECT COUNT({col}) FROM customer WHERE segment = '{segment}'",
        (
            "How many {segment} customers have a recorded {col_text}?",
            "Count the {segment} customers whose {col_text} is known.",
            "For how many {segment} clients do we have any {col_text}?",
            "Number of {segment} customers we could reach by {col_text}?",
            "How many {col_text} entries exist among {segment} customers?",
        ),
        lambda v: expand(grid(col=list(NULLABLE), segment=SEGMENTS), "col", NULLABLE),
    ),
    T(
        "count_postal_codes_in_country",
        "SELECT COUNT(postal_code) FROM address WHERE country = '{country}'",
        (
            "How many addresses in {country} have a postal code?",
            "Count the addresses in {country} with a known postal code.",
            "In {country}, how many addresses include a zip code?",
            "How many {country} addresses come with a postcode?",
            "Number of postal codes we know for addresses in {country}?",
        ),
        lambda v: grid(country=v.countries),
    ),
    T(
        "orders_without_shipping_address",
        "SELECT order_id, order_date FROM orders WHERE shipping_address_id IS NULL AND "
        "status = '{status}'",
        (
            "Which {status} orders have no shipping address?",
            "List {status} orders where the delivery address is missing, with dates.",
            "Show the ids and dates of {status} orders without a shipping address.",
            "We don't know where some {status} orders go: which ones, and when?",
            "{status} orders lacking a destination address, with their order dates?",
        ),
        lambda v: grid(status=STATUSES),
    ),
    T(
        "addresses_without_postal_code",
        "SELECT street, city FROM address WHERE postal_code IS NULL AND country = "
        "'{country}'",
        (
            "Which addresses in {country} are missing a postal code?",
            "List the street and city of {country} addresses with no postcode.",
            "Show addresses in {country} that have no zip code.",
            "What {country} addresses lack a postal code? Street and city please.",
            "Streets and cities in {country} where the postal code is unknown?",
        ),
        lambda v: grid(country=v.countries),
    ),
    # --- aggregation ------------------------------------------------------------------
    T(
        "count_orders_status_year",
        "SELECT COUNT(*) FROM orders WHERE status = '{status}' AND strftime('%Y', "
        "order_date) = '{year}'",
        (
            "How many {status} orders were placed in {year}?",
            "Count the orders from {year} with status {status}.",
            "In {year}, how many orders ended up {status}?",
            "What is the number of {status} purchases in {year}?",
            "How many of the {year} orders are {status}?",
        ),
        lambda v: grid(status=STATUSES, year=YEARS),
    ),
    T(
        "customer_total_spent",
        "SELECT SUM(total_amount) FROM orders WHERE customer_id = {cid}",
        (
            "What is the total amount spent by customer {cid}?",
            "How much has customer {cid} spent with us?",
            "Add up the order totals of customer {cid}.",
            "How much money did client {cid} bring in overall?",
            "What is customer {cid}'s lifetime spending?",
        ),
        customer_ids,
    ),
    T(
        "price_stat_in_category",
        "SELECT {agg}(unit_price) FROM product WHERE category = '{category}'",
        (
            "What is the {agg_text} unit price of {category} products?",
            "Give the {agg_text} price among products in the {category} category.",
            "What does the {agg_text} {category} item cost?",
            "In {category}, what is the {agg_text} price?",
            "Find the {agg_text} cost of a {category} product.",
        ),
        lambda v: expand(
            grid(agg=list(PRICE_AGG), category=v.categories), "agg", PRICE_AGG
        ),
    ),
    T(
        "order_amount_stat_by_year",
        "SELECT {agg}(total_amount) FROM orders WHERE strftime('%Y', order_date) = "
        "'{year}'",
        (
            "What was the {agg_text} order amount in {year}?",
            "Find the {agg_text} total of orders placed in {year}.",
            "In {year}, what was the {agg_text} order value?",
            "Looking at {year}'s orders, what is the {agg_text} amount?",
            "Give me the {agg_text} purchase value for {year}.",
        ),
        lambda v: expand(grid(agg=list(AMOUNT_AGG), year=YEARS), "agg", AMOUNT_AGG),
    ),
    T(
        "count_addresses_in_city",
        "SELECT COUNT(*) FROM address WHERE city = '{city}'",
        (
            "How many addresses are in {city}?",
            "Count the addresses located in {city}.",
            "How many of our addresses are in the city of {city}?",
            "Number of addresses we have in {city}?",
            "How many places in {city} do we deliver or bill to?",
        ),
        lambda v: grid(city=v.cities),
    ),
    T(
        "count_contacts_channel_outcome",
        "SELECT COUNT(*) FROM contact WHERE channel = '{channel}' AND outcome = "
        "'{outcome}'",
        (
            "How many {channel} contacts ended with outcome {outcome}?",
            "Count the contacts made by {channel} whose outcome was {outcome}.",
            "How often did a {channel} contact end as {outcome}?",
            "Number of {outcome} results among {channel} contacts?",
            "How many times did reaching out by {channel} end {outcome}?",
        ),
        lambda v: grid(channel=CHANNELS, outcome=OUTCOMES),
    ),
    T(
        "count_customers_segment_year",
        "SELECT COUNT(*) FROM customer WHERE segment = '{segment}' AND strftime('%Y', "
        "signup_date) = '{year}'",
        (
            "How many {segment} customers signed up in {year}?",
            "Count the {segment} customers who joined in {year}.",
            "How many new {segment} clients did we get in {year}?",
            "Number of {segment} registrations in {year}?",
            "In {year}, how many customers of the {segment} segment came on board?",
        ),
        lambda v: grid(segment=SEGMENTS, year=YEARS),
    ),
    # --- GROUP BY / HAVING ------------------------------------------------------------
    T(
        "customers_per_segment",
        "SELECT segment, COUNT(*) FROM customer GROUP BY segment",
        (
            "How many customers are in each segment?",
            "Break down our customers by segment.",
            "Give the number of customers per segment.",
        ),
        lambda v: [{}],
    ),
    T(
        "products_per_category",
        "SELECT category, COUNT(*) FROM product GROUP BY category",
        (
            "How many products are in each category?",
            "Count the items we sell per category.",
            "How big is each product category?",
        ),
        lambda v: [{}],
    ),
    T(
        "orders_per_month_in_year",
        "SELECT strftime('%m', order_date), COUNT(*) FROM orders WHERE strftime('%Y', "
        "order_date) = '{year}' GROUP BY strftime('%m', order_date)",
        (
            "How many orders were placed each month in {year}?",
            "Show the monthly order count for {year}.",
            "Month by month, how many orders came in during {year}?",
        ),
        lambda v: grid(year=YEARS),
    ),
    T(
        "address_count_per_city_in_country",
        "SELECT city, COUNT(*) FROM address WHERE country = '{country}' GROUP BY city",
        (
            "How many addresses are there in each city of {country}?",
            "Count the addresses per city for {country}.",
            "For each city in {country}, give the number of addresses.",
            "Break down our {country} addresses by city.",
            "Which cities in {country} have addresses, and how many each?",
        ),
        lambda v: grid(country=v.countries),
    ),
    T(
        "price_stat_per_category",
        "SELECT category, {agg}(unit_price) FROM product GROUP BY category",
        (
            "What is the {agg_text} unit price in each product category?",
            "Show the {agg_text} product price per category.",
            "For every category, what does the {agg_text} item cost?",
        ),
        lambda v: expand(grid(agg=list(PRICE_AGG)), "agg", PRICE_AGG),
    ),
    T(
        "status_counts_in_year",
        "SELECT status, COUNT(*) FROM orders WHERE strftime('%Y', order_date) = "
        "'{year}' GROUP BY status",
        (
            "How many orders of each status were placed in {year}?",
            "Break down the {year} orders by status.",
            "For purchases made in {year}, how many are in each state?",
        ),
        lambda v: grid(year=YEARS),
    ),
    T(
        "contacts_per_channel_for_outcome",
        "SELECT channel, COUNT(*) FROM contact WHERE outcome = '{outcome}' GROUP BY "
        "channel",
        (
            "How many contacts with outcome {outcome} were there per channel?",
            "Count the {outcome} contacts for each channel.",
            "By channel, how many customer interactions ended {outcome}?",
            "Split the {outcome} contacts by how we reached the customer.",
        ),
        lambda v: grid(outcome=OUTCOMES),
    ),
    T(
        "customers_with_many_orders",
        "SELECT customer_id, COUNT(*) FROM orders GROUP BY customer_id HAVING COUNT(*) "
        "> {n}",
        (
            "Which customers have placed more than {n} orders, and how many?",
            "List customer ids with more than {n} orders and their order counts.",
            "Who ordered more than {n} times? Give ids and counts.",
            "Our repeat buyers with over {n} purchases: ids and number of orders?",
            "Customers with more than {n} orders on record, and their order counts?",
        ),
        lambda v: grid(n=range(2, 12)),
    ),
    T(
        "categories_with_high_avg_price",
        "SELECT category FROM product GROUP BY category HAVING AVG(unit_price) > "
        "{price}",
        (
            "Which categories have an average unit price above {price}?",
            "List product categories whose average price exceeds {price}.",
            "In which categories does the typical item cost more than {price} on average?",
            "Which kinds of product average over {price}?",
            "Categories with a mean price higher than {price}?",
        ),
        lambda v: grid(price=PRICES),
    ),
    T(
        "countries_with_many_addresses",
        "SELECT country, COUNT(*) FROM address GROUP BY country HAVING COUNT(*) >= {n}",
        (
            "Which countries have at least {n} addresses?",
            "List countries with {n} or more addresses and their counts.",
            "In which countries do we have {n} addresses or more, and how many?",
            "Countries holding no fewer than {n} addresses, with the number?",
            "Show each country having at least {n} addresses, with the count.",
        ),
        lambda v: grid(n=range(5, 25)),
    ),
    T(
        "orders_with_many_units",
        "SELECT order_id, SUM(quantity) FROM order_item GROUP BY order_id HAVING "
        "SUM(quantity) > {n}",
        (
            "Which orders contain more than {n} units in total?",
            "List order ids whose total quantity exceeds {n}, with the quantity.",
            "Which orders had over {n} items in them, counting quantities?",
            "Orders where more than {n} pieces were bought, with the number of pieces?",
            "Show orders with a combined item quantity above {n}.",
        ),
        lambda v: grid(n=range(4, 16)),
    ),
    T(
        "big_spenders",
        "SELECT T1.last_name, SUM(T2.total_amount) FROM customer AS T1 JOIN orders AS "
        "T2 "
        "ON T1.customer_id = T2.customer_id GROUP BY T1.customer_id HAVING "
        "SUM(T2.total_amount) > {amount}",
        (
            "Which customers spent over {amount} in total? Give surname and total.",
            "List last names of customers whose orders total over {amount}, with sums.",
            "Who has spent more than {amount} with us? Surname and amount, please.",
            "Our best clients, above {amount} spent: family names and spending?",
            "Show last name and total spending for customers who spent above {amount}.",
        ),
        lambda v: grid(amount=SPEND),
    ),
    # --- ORDER BY / LIMIT -------------------------------------------------------------
    T(
        "top_products_by_price",
        "SELECT name, unit_price FROM product ORDER BY unit_price {dir} LIMIT {n}",
        (
            "What are the {n} {adj} products and their prices?",
            "List the {n} {adj} items we sell, with what they cost.",
            "Show the top {n} {adj} products and their unit prices.",
            "Give me our {n} {adj} articles and their prices.",
            "Which {n} products are the {adj}? Include prices.",
        ),
        lambda v: expand(grid(dir=list(PRICE_ORDER), n=TOP_N), "dir", PRICE_ORDER),
    ),
    T(
        "largest_orders_by_status",
        "SELECT order_id, total_amount FROM orders WHERE status = '{status}' ORDER BY "
        "total_amount DESC LIMIT {n}",
        (
            "Show the {n} largest {status} orders by total amount.",
            "What are the {n} biggest {status} orders and their values?",
            "List the top {n} {status} purchases ranked by how much they were worth.",
            "Which {n} {status} orders brought in the most money, with totals?",
            "Give the {n} most valuable {status} orders and their amounts.",
        ),
        lambda v: grid(status=STATUSES, n=TOP_N),
    ),
    T(
        "customers_by_signup",
        "SELECT first_name, last_name, signup_date FROM customer ORDER BY signup_date "
        "{dir} LIMIT {n}",
        (
            "Who were the {n} {adj} customers to sign up, and when?",
            "List the {n} customers with the {adj} signup dates.",
            "Show the names and join dates of the {n} {adj} customers to register.",
            "Which {n} clients joined {adj}? Give the dates too.",
            "Name the {n} {adj} people to become customers, with the date.",
        ),
        lambda v: expand(grid(dir=list(SIGNUP_ORDER), n=TOP_N), "dir", SIGNUP_ORDER),
    ),
    T(
        "top_spending_customers",
        "SELECT customer_id, SUM(total_amount) FROM orders GROUP BY customer_id "
        "ORDER BY SUM(total_amount) DESC LIMIT {n}",
        (
            "Which {n} customers have spent the most in total?",
            "List the top {n} customers by total order amount.",
            "Who are our {n} biggest spenders? Give ids and amounts.",
            "Rank customers by spending and show the first {n}.",
            "Show the {n} customers with the highest total spending.",
        ),
        lambda v: grid(n=TOP_N),
    ),
    T(
        "best_selling_products",
        "SELECT T2.name, SUM(T1.quantity) FROM order_item AS T1 JOIN product AS T2 "
        "ON T1.product_id = T2.product_id GROUP BY T2.name ORDER BY SUM(T1.quantity) "
        "DESC LIMIT {n}",
        (
            "What are the {n} best-selling products by quantity?",
            "List the top {n} products by total units ordered.",
            "Which {n} items do customers buy the most of? Give the units.",
            "Our {n} most popular products by number of pieces sold?",
            "Which {n} products have the highest total quantity ordered?",
        ),
        lambda v: grid(n=TOP_N),
    ),
    # --- dates ------------------------------------------------------------------------
    T(
        "orders_in_date_range",
        "SELECT order_id, total_amount FROM orders WHERE order_date BETWEEN '{start}' "
        "AND '{end}'",
        (
            "List the orders placed between {start} and {end} with their totals.",
            "Which orders were made from {start} to {end}, and what were they worth?",
            "Show order ids and totals for orders dated between {start} and {end}.",
            "What did we sell from {start} through {end}? Order ids and amounts.",
            "Orders between {start} and {end} with their values?",
        ),
        lambda v: month_ranges(),
    ),
    T(
        "customers_signed_up_after",
        "SELECT first_name, last_name FROM customer WHERE signup_date > '{date}'",
        (
            "Which customers signed up after {date}?",
            "List customers whose signup date is later than {date}.",
            "Who joined us after {date}?",
            "Name the clients that registered after {date}.",
            "Show the customers acquired since {date}, not counting that day.",
        ),
        lambda v: signup_cutoffs(),
    ),
    T(
        "count_contacts_in_range",
        "SELECT COUNT(*) FROM contact WHERE contact_date BETWEEN '{start}' AND '{end}'",
        (
            "How many contacts happened between {start} and {end}?",
            "Count the customer contacts dated from {start} to {end}.",
            "How many times did we talk to customers from {start} to {end}?",
            "Number of customer interactions between {start} and {end}?",
            "How many contacts were logged from {start} through {end}?",
        ),
        lambda v: quarter_ranges(),
    ),
    T(
        "yearly_totals_by_status",
        "SELECT strftime('%Y', order_date), SUM(total_amount) FROM orders "
        "WHERE status = '{status}' GROUP BY strftime('%Y', order_date)",
        (
            "What is the total amount of {status} orders per year?",
            "Show the yearly revenue from {status} orders.",
            "For each year, how much were the {status} orders worth?",
        ),
        lambda v: grid(status=STATUSES),
    ),
    # --- joins (2 tables) -------------------------------------------------------------
    T(
        "orders_by_customer_last_name",
        "SELECT T1.order_id, T1.order_date FROM orders AS T1 JOIN customer AS T2 "
        "ON T1.customer_id = T2.customer_id WHERE T2.last_name = '{last}'",
        (
            "List the orders placed by customers with last name {last}.",
            "What did the {last} family order, and when? Order ids and dates.",
            "Show order ids and dates for customers named {last}.",
            "Which purchases were made by people with surname {last}, and on what date?",
            "Orders from customers called {last}, with dates?",
        ),
        lambda v: [{"last": last} for last in v.last_names],
    ),
    T(
        "who_placed_order",
        "SELECT T2.first_name, T2.last_name FROM orders AS T1 JOIN customer AS T2 "
        "ON T1.customer_id = T2.customer_id WHERE T1.order_id = {oid}",
        (
            "Who placed order {oid}?",
            "Which customer made order number {oid}?",
            "Whose order is number {oid}?",
            "Give the name of the buyer of order {oid}.",
            "Who is the customer behind order {oid}?",
        ),
        lambda v: grid(oid=v.order_ids),
    ),
    T(
        "email_of_order_buyer",
        "SELECT T2.email FROM orders AS T1 JOIN customer AS T2 "
        "ON T1.customer_id = T2.customer_id WHERE T1.order_id = {oid}",
        (
            "What is the email of whoever placed order {oid}?",
            "How do I email the customer of order {oid}?",
            "Find the email address of the buyer of order {oid}.",
            "Which email belongs to the person who ordered {oid}?",
            "Order {oid}: what is the customer's email?",
        ),
        lambda v: grid(oid=v.order_ids),
    ),
    T(
        "address_locations_of_customer",
        "SELECT T2.city, T2.country FROM customer AS T1 JOIN address AS T2 "
        "ON T1.customer_id = T2.customer_id WHERE T1.first_name = '{first}' AND "
        "T1.last_name = '{last}'",
        (
            "In which cities and countries does {first} {last} have addresses?",
            "Where does {first} {last} live? Give city and country.",
            "Where are the addresses of {first} {last} located?",
            "List the city and country of every address of {first} {last}.",
            "What places, city and country, do we have on file for {first} {last}?",
        ),
        people,
    ),
    T(
        "customers_with_address_in_city",
        "SELECT DISTINCT T1.first_name, T1.last_name FROM customer AS T1 JOIN address "
        "AS T2 "
        "ON T1.customer_id = T2.customer_id WHERE T2.city = '{city}'",
        (
            "Which customers have an address in {city}?",
            "Who lives in {city}?",
            "List the names of customers with an address located in {city}.",
            "Which clients do we have in {city}? Each one once.",
            "Show the distinct customers who have an address in {city}.",
        ),
        lambda v: grid(city=v.cities),
    ),
    T(
        "contacts_by_customer_last_name",
        "SELECT T1.channel, T1.contact_date FROM contact AS T1 JOIN customer AS T2 "
        "ON T1.customer_id = T2.customer_id WHERE T2.last_name = '{last}'",
        (
            "List the channel and date of contacts with customers named {last}.",
            "When and how did we get in touch with the {last} customers?",
            "Show contact channels and dates for customers whose surname is {last}.",
            "How and when were people called {last} contacted?",
            "Contacts with customers with family name {last}: channel and date?",
        ),
        lambda v: [{"last": last} for last in v.last_names],
    ),
    T(
        "contact_count_of_person",
        "SELECT COUNT(*) FROM contact AS T1 JOIN customer AS T2 "
        "ON T1.customer_id = T2.customer_id WHERE T2.first_name = '{first}' AND "
        "T2.last_name = '{last}'",
        (
            "How many times have we contacted {first} {last}?",
            "How often did we get in touch with {first} {last}?",
            "Count the contacts with {first} {last}.",
            "What is the number of interactions with {first} {last}?",
            "How many conversations have we had with {first} {last}?",
        ),
        people,
    ),
    T(
        "count_orders_segment_status",
        "SELECT COUNT(*) FROM orders AS T1 JOIN customer AS T2 ON T1.customer_id = "
        "T2.customer_id "
        "WHERE T2.segment = '{segment}' AND T1.status = '{status}'",
        (
            "How many {status} orders come from {segment} customers?",
            "Count the {status} orders placed by {segment} customers.",
            "What is the number of {status} orders from the {segment} segment?",
            "How many orders by {segment} clients are {status}?",
            "Among {segment} customers' purchases, how many are {status}?",
        ),
        lambda v: grid(segment=SEGMENTS, status=STATUSES),
    ),
    T(
        "orders_shipped_to_city",
        "SELECT T1.order_id, T1.status FROM orders AS T1 JOIN address AS T2 "
        "ON T1.shipping_address_id = T2.address_id WHERE T2.city = '{city}'",
        (
            "Which orders have a shipping address in {city}, and what is their status?",
            "List ids and statuses of orders shipped to {city}.",
            "What orders go to {city}, and where do they stand?",
            "Orders delivered or to be delivered in {city}, with status?",
            "Show orders whose shipping address is in {city} with their status.",
        ),
        lambda v: grid(city=v.cities),
    ),
    T(
        "products_in_order",
        "SELECT T2.name, T1.quantity FROM order_item AS T1 JOIN product AS T2 "
        "ON T1.product_id = T2.product_id WHERE T1.order_id = {oid}",
        (
            "Which products and quantities are in order {oid}?",
            "What was bought in order {oid}, and how many of each?",
            "List the product names and quantities for order {oid}.",
            "What is inside order {oid}? Items and counts.",
            "Show the contents of order number {oid}.",
        ),
        lambda v: grid(oid=v.order_ids),
    ),
    T(
        "units_sold_of_product",
        "SELECT SUM(T1.quantity) FROM order_item AS T1 JOIN product AS T2 "
        "ON T1.product_id = T2.product_id WHERE T2.name = '{product}'",
        (
            "How many units of {product} have been ordered in total?",
            "How many {product} have we sold?",
            "What is the total quantity ordered of the {product}?",
            "Count the pieces of {product} bought across all orders.",
            "How many {product} did customers order altogether?",
        ),
        lambda v: grid(product=v.product_names),
    ),
    # --- joins (3 tables) -------------------------------------------------------------
    T(
        "products_bought_by_customer",
        "SELECT DISTINCT T3.name FROM orders AS T1 JOIN order_item AS T2 ON "
        "T1.order_id = T2.order_id "
        "JOIN product AS T3 ON T2.product_id = T3.product_id WHERE T1.customer_id = "
        "{cid}",
        (
            "Which products has customer {cid} ordered?",
            "What has customer {cid} bought from us? Each product once.",
            "List the distinct products bought by customer {cid}.",
            "What items appear in the orders of client {cid}?",
            "Which of our products did customer number {cid} purchase?",
        ),
        customer_ids,
    ),
    T(
        "customers_shipping_to_country",
        "SELECT DISTINCT T1.first_name, T1.last_name FROM customer AS T1 JOIN orders "
        "AS T2 "
        "ON T1.customer_id = T2.customer_id JOIN address AS T3 ON "
        "T2.shipping_address_id = T3.address_id "
        "WHERE T3.country = '{country}'",
        (
            "Which customers have had orders shipped to {country}?",
            "Who has received a delivery in {country}?",
            "List customers with at least one order shipped to {country}.",
            "Which clients sent orders to an address in {country}? Each once.",
            "Show the names of customers whose orders were sent to {country}.",
        ),
        lambda v: grid(country=v.countries),
    ),
    T(
        "units_by_category_and_status",
        "SELECT SUM(T2.quantity) FROM orders AS T1 JOIN order_item AS T2 ON "
        "T1.order_id = T2.order_id "
        "JOIN product AS T3 ON T2.product_id = T3.product_id "
        "WHERE T3.category = '{category}' AND T1.status = '{status}'",
        (
            "How many {category} units are in {status} orders?",
            "What is the total quantity of {category} products in {status} orders?",
            "How many {category} items were in orders that are now {status}?",
            "Count the {category} pieces across {status} purchases.",
            "Sum the quantities of {category} items across {status} orders.",
        ),
        lambda v: grid(category=v.categories, status=STATUSES),
    ),
    T(
        "buyers_of_product",
        "SELECT DISTINCT T1.customer_id FROM orders AS T1 JOIN order_item AS T2 ON "
        "T1.order_id = T2.order_id "
        "JOIN product AS T3 ON T2.product_id = T3.product_id WHERE T3.name = "
        "'{product}'",
        (
            "Which customers have ordered the {product}? Give their ids.",
            "Who bought a {product}? Customer ids only.",
            "List the ids of customers who purchased the {product}.",
            "Give the customer numbers of everyone who ordered a {product}.",
            "Which customer ids appear on orders containing the {product}?",
        ),
        lambda v: grid(product=v.product_names),
    ),
    # --- nested subqueries ------------------------------------------------------------
    T(
        "products_above_category_average",
        "SELECT name FROM product WHERE unit_price > "
        "(SELECT AVG(unit_price) FROM product WHERE category = '{category}')",
        (
            "Which products cost more than the average {category} product?",
            "List products priced above the average price of the {category} category.",
            "What do we sell that is pricier than a typical {category} item on average?",
            "Find items more expensive than the mean {category} price.",
            "Which products beat the average {category} price?",
        ),
        lambda v: grid(category=v.categories),
    ),
    T(
        "customers_without_status_orders",
        "SELECT first_name, last_name FROM customer WHERE customer_id NOT IN "
        "(SELECT customer_id FROM orders WHERE status = '{status}')",
        (
            "Which customers have never had a {status} order?",
            "List the customers with no {status} orders.",
            "Who has not a single {status} purchase?",
            "Name the clients none of whose orders is {status}.",
            "Show the names of customers who have no order with status {status}.",
        ),
        lambda v: grid(status=STATUSES),
    ),
    T(
        "customers_contacted_via",
        "SELECT first_name, last_name FROM customer WHERE customer_id IN "
        "(SELECT customer_id FROM contact WHERE channel = '{channel}' AND outcome = "
        "'{outcome}')",
        (
            "Which customers had a {channel} contact with outcome {outcome}?",
            "List customers contacted by {channel} where the outcome was {outcome}.",
            "Who did we reach by {channel} with a {outcome} result?",
            "Names of clients whose {channel} conversation ended {outcome}?",
            "Show customers with a {channel} contact that ended as {outcome}.",
        ),
        lambda v: grid(channel=CHANNELS, outcome=OUTCOMES),
    ),
    T(
        "orders_above_average_by_status",
        "SELECT order_id, total_amount FROM orders WHERE status = '{status}' "
        "AND total_amount > (SELECT AVG(total_amount) FROM orders)",
        (
            "Which {status} orders have a total amount above the average order amount?",
            "List {status} orders whose total is higher than the average order total.",
            "Which {status} orders are worth more than a typical order on average?",
            "{status} purchases above the mean order value, with their totals?",
            "Show {status} orders worth more than the average order.",
        ),
        lambda v: grid(status=STATUSES),
    ),
)


# ---------------------------------------------------------------------------
# Example generation.
# ---------------------------------------------------------------------------


def is_informative(result: list[tuple]) -> bool:
    """False for results that say nothing: no rows, or only NULLs and zeros."""
    return any(value not in (None, 0) for row in result for value in row)


LIMIT_RE = re.compile(r" LIMIT (\d+)$")


def has_tie_at_limit(conn: sqlite3.Connection, query: str) -> bool:
    """True when ``ORDER BY ... LIMIT n`` cuts through a tie (ambiguous gold rows).

    Every ORDER BY template selects its sort key as the last column, so the n-th and
    (n+1)-th rows tie when their last values are equal.
    """
    match = LIMIT_RE.search(query)
    if match is None:
        return False
    n = int(match.group(1))
    rows = conn.execute(f"{query[: match.start()]} LIMIT {n + 1}").fetchall()
    return len(rows) > n and rows[n][-1] == rows[n - 1][-1]


def build_examples(
    conn: sqlite3.Connection, seed: int, context: str
) -> list[dict[str, str]]:
    """Fill each template up to PER_TEMPLATE times; questions and queries are unique.
    ``context`` is every row's schema context (:func:`schema_context`).

    Each row holds the CSV columns plus ``template`` (the template name, not written).
    """
    rng = random.Random(seed + 10_000)
    values = Values.from_db(conn)
    seen_questions: set[str] = set()
    seen_queries: set[str] = set()
    rows: list[dict[str, str]] = []
    for template in TEMPLATES:
        candidates = template.space(values)
        rng.shuffle(candidates)
        made = 0
        for params in candidates:
            if made == PER_TEMPLATE:
                break
            query = template.sql.format(**params)
            question = rng.choice(template.phrasings).format(**params)
            words = len(question.split())
            if not MIN_QUESTION_WORDS <= words <= MAX_QUESTION_WORDS:
                raise ValueError(f"{template.name}: {words} words in {question!r}")
            if question in seen_questions or query in seen_queries:
                continue
            if not is_informative(conn.execute(query).fetchall()):
                continue
            if has_tie_at_limit(conn, query):
                continue
            seen_questions.add(question)
            seen_queries.add(query)
            rows.append(
                {
                    "question": question,
                    "query": query,
                    "context": context,
                    "db_id": DB_ID,
                    "template": template.name,
                }
            )
            made += 1
    rng.shuffle(rows)
    return rows


def write_csv(path: Path, rows: list[dict[str, str]]) -> None:
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(
            handle, fieldnames=CSV_COLUMNS, lineterminator="\n", extrasaction="ignore"
        )
        writer.writeheader()
        writer.writerows(rows)


def generate(out_dir: Path, seed: int = DEFAULT_SEED) -> tuple[Path, Path]:
    """Write shop.sqlite and shop.csv into ``out_dir``; return their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    db_path = out_dir / f"{DB_ID}.sqlite"
    csv_path = out_dir / f"{DB_ID}.csv"
    build_database(db_path, seed)
    context = schema_context(db_path)
    conn = sqlite3.connect(db_path)
    try:
        rows = build_examples(conn, seed, context)
    finally:
        conn.close()
    write_csv(csv_path, rows)
    return db_path, csv_path


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--seed", type=int, default=DEFAULT_SEED, help="random seed (default: 7)"
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=Path(__file__).resolve().parent,
        help="output folder (default: this script's folder)",
    )
    args = parser.parse_args(argv)
    db_path, csv_path = generate(args.out, args.seed)
    with csv_path.open(encoding="utf-8") as handle:
        count = sum(1 for _ in csv.DictReader(handle))
    print(f"wrote {db_path} and {csv_path} ({count} examples)")


if __name__ == "__main__":
    main()
