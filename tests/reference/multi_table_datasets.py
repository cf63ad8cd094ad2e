"""The multi-table reference datasets (seeded): what ``ref_multi_table.py`` writes as CSV
and records SDMetrics' reports on. See that script's docstring for what each holds.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

DATETIME_FORMAT = "%Y-%m-%d %H:%M:%S"

Tables = dict[str, pd.DataFrame]


def _when(rng: np.random.Generator, n: int, start: str, days: float) -> pd.Series:
    out: pd.Series = pd.Series(
        pd.Timestamp(start)
        + pd.to_timedelta(rng.uniform(0, days, n).round(), unit="D")
        + pd.to_timedelta(rng.integers(0, 86400, n), unit="s")
    )
    return out


def _blank(rng: np.random.Generator, df: pd.DataFrame, rates: dict[str, float]) -> pd.DataFrame:
    for column, rate in rates.items():
        df.loc[rng.random(len(df)) < rate, column] = None
    return df


def _shop(rng: np.random.Generator, synthetic: bool) -> Tables:
    n = 260 if synthetic else 300
    shift = 4.0 if synthetic else 0.0
    ids = np.arange(n).astype(object)
    if synthetic:
        ids[rng.random(n) < 0.02] = 0  # a duplicated primary key
    age = rng.normal(42 + shift, 12, n).round(1)
    income = np.exp(9.5 + 0.025 * age + rng.normal(0, 0.25, n)).round(2)  # strong with age
    vip = rng.random(n) < (0.35 if synthetic else 0.25)
    segments = ["gold", "silver", "bronze", "trial"] if synthetic else ["gold", "silver", "bronze"]
    segment = np.where(vip, "gold", rng.choice(segments[1:], n)).astype(object)  # strong with vip
    region = rng.choice(["north", "south", "east", "west"], n).astype(object)  # weak with everything
    signup = _when(rng, n, "2023-01-01", 700 + 30 * shift)
    customers = pd.DataFrame(
        {
            "customer_id": ids,
            "age": age,
            "income": income,
            "segment": segment,
            "vip": vip.astype(object),
            "region": region,
            "signup": signup,
        }
    )
    customers = _blank(rng, customers, {"age": 0.03, "income": 0.02, "vip": 0.03, "signup": 0.02})

    # orders: 0 to ~8 per customer (some customers have none), amounts follow the parent's income
    per_customer = rng.poisson(np.where(vip, 4.0, 1.5) + (1.0 if synthetic else 0.0))
    parent = np.repeat(np.arange(n), per_customer)
    m = parent.size
    amount = (customers["income"].fillna(30000).to_numpy()[parent] / 400 * rng.lognormal(0, 0.2, m)).round(2)
    channel = np.where(
        vip[parent], rng.choice(["app", "web"], m, p=[0.85, 0.15]), rng.choice(["web", "store"], m, p=[0.7, 0.3])
    ).astype(object)  # strong with the parent's segment
    delay = rng.exponential(60, m).round()
    ordered_at = signup.to_numpy()[parent] + pd.to_timedelta(delay, unit="D")
    fk = ids[parent].astype(object)
    if synthetic:
        orphans = rng.random(m) < 0.06
        fk[orphans] = rng.integers(10_000, 10_050, int(orphans.sum()))  # reference no customer
    else:
        fk[rng.random(m) < 0.02] = None  # missing foreign keys in the real data
    orders = pd.DataFrame(
        {
            "order_id": np.arange(m).astype(object),
            "customer_id": fk,
            "amount": amount,
            "channel": channel,
            "gift": (rng.random(m) < 0.1).astype(object),
            "ordered_at": pd.Series(ordered_at),
            "note": rng.choice(["", "fragile", "rush"], m).astype(object),
        }
    )
    orders = _blank(rng, orders, {"amount": 0.03, "gift": 0.02})

    # tickets: VIPs open more, and with higher priority
    per_customer = rng.poisson(np.where(vip, 1.5, 0.6))
    parent = np.repeat(np.arange(n), per_customer)
    k = parent.size
    priority = np.where(
        vip[parent], rng.choice(["high", "urgent"], k, p=[0.6, 0.4]), rng.choice(["low", "high"], k, p=[0.8, 0.2])
    ).astype(object)
    fk = ids[parent].astype(object)
    if synthetic:
        fk[rng.random(k) < 0.03] = None  # missing foreign keys only in the synthetic data
    tickets = pd.DataFrame(
        {
            "ticket_id": np.arange(k).astype(object),
            "customer_id": fk,
            "priority": priority,
            "minutes": rng.gamma(2, 15 + shift, k).round(1),
            "opened_at": _when(rng, k, "2024-06-01", 200),
        }
    )

    s = 40
    stores = pd.DataFrame(
        {
            "store_id": np.arange(s).astype(object),
            "size": rng.normal(500 + 20 * shift, 100, s).round(0),
            "city": rng.choice(["a", "b", "c"], s).astype(object),
        }
    )
    return {"customers": customers, "orders": orders, "tickets": tickets, "stores": stores}


def _chain(rng: np.random.Generator, synthetic: bool) -> Tables:
    n = 180 if synthetic else 200
    users = pd.DataFrame(
        {
            "user_id": [f"u{i:04d}" for i in range(n)],
            "country": rng.choice(["fr", "de", "es"], n).astype(object),
            "score": rng.normal(0.3 if synthetic else 0.0, 1, n).round(4),
            "beta": (rng.random(n) < 0.5).astype(object),
        }
    )
    per_user = rng.poisson(3.0 if synthetic else 2.5, n)
    parent = np.repeat(np.arange(n), per_user)
    m = parent.size
    sessions = pd.DataFrame(
        {
            "session_id": [f"s{i:05d}" for i in range(m)],
            "user_id": users["user_id"].to_numpy()[parent],
            "device": rng.choice(["ios", "android", "web"], m).astype(object),
            "seconds": rng.exponential(300, m).round(1),
            "started": _when(rng, m, "2025-03-01", 90),
        }
    )
    sessions = _blank(rng, sessions, {"seconds": 0.05, "device": 0.03})
    per_session = rng.poisson(2.0, m)
    parent = np.repeat(np.arange(m), per_session)
    e = parent.size
    events = pd.DataFrame(
        {
            "event_id": [f"e{i:06d}" for i in range(e)],
            "session_id": sessions["session_id"].to_numpy()[parent],
            "kind": rng.choice(["view", "click", "buy"], e, p=[0.6, 0.3, 0.1]).astype(object),
            "value": rng.normal(10, 3, e).round(3),
        }
    )
    if synthetic:  # orphans one level down
        events.loc[rng.random(e) < 0.04, "session_id"] = "s99999"
    return {"users": users, "sessions": sessions, "events": events}


def _composite(rng: np.random.Generator, synthetic: bool) -> Tables:
    n = 120
    shop = rng.integers(1, 6, n)
    number = np.arange(n)
    total = rng.normal(100, 30, n).round(2)
    invoices = pd.DataFrame(
        {"shop": shop.astype(object), "number": number.astype(object), "total": total, "paid": rng.random(n) < 0.7}
    )
    invoices["paid"] = invoices["paid"].astype(object)
    per = rng.integers(0, 5 if synthetic else 4, n)
    parent = np.repeat(np.arange(n), per)
    m = parent.size
    lines = pd.DataFrame(
        {
            "line_id": np.arange(m).astype(object),
            "shop": shop[parent].astype(object),
            "number": number[parent].astype(object),
            "price": (total[parent] / 3 * rng.lognormal(0, 0.3 if synthetic else 0.1, m)).round(2),
        }
    )
    if synthetic:
        lines.loc[rng.random(m) < 0.05, "shop"] = 9  # (9, number) references no invoice
    return {"invoices": invoices, "lines": lines}


def _composite_nan(rng: np.random.Generator, synthetic: bool) -> Tables:
    """A text composite key (region, account) whose child columns have missing values
    (one column or the other, never both): pandas 3's MultiIndex join loses those rows."""
    n = 90
    region = rng.choice(["north", "south", "east"], n).astype(object)
    account = np.array([f"a{i:03d}" for i in range(n)], dtype=object)
    balance = rng.normal(1000 + (150 if synthetic else 0), 300, n).round(2)
    accounts = pd.DataFrame({"region": region, "account": account, "balance": balance})
    per = rng.poisson(np.where(balance > 1100, 3.0, 1.0) + (0.5 if synthetic else 0.0))
    parent = np.repeat(np.arange(n), per)
    m = parent.size
    payments = pd.DataFrame(
        {
            "payment_id": np.array([f"p{i:04d}" for i in range(m)], dtype=object),
            "region": region[parent],
            "account": account[parent],
            "amount": (balance[parent] / 10 * rng.lognormal(0, 0.25 if synthetic else 0.1, m)).round(2),
        }
    )
    blank = rng.random(m)
    payments.loc[blank < 0.08, "region"] = None
    payments.loc[(blank >= 0.08) & (blank < (0.20 if synthetic else 0.14)), "account"] = None
    if synthetic:
        payments.loc[(blank >= 0.20) & (blank < 0.24), "account"] = "a999"  # references no account
    return {"accounts": accounts, "payments": payments}


def _column(sdtype: str, **extra: Any) -> dict[str, Any]:
    meta = {"sdtype": sdtype, **extra}
    if sdtype == "datetime":
        meta["datetime_format"] = DATETIME_FORMAT
    return meta


SHOP_METADATA: dict[str, Any] = {
    "tables": {
        "customers": {
            "primary_key": "customer_id",
            "columns": {
                "customer_id": _column("id"),
                "age": _column("numerical"),
                "income": _column("numerical"),
                "segment": _column("categorical"),
                "vip": _column("boolean"),
                "region": _column("categorical"),
                "signup": _column("datetime"),
            },
        },
        "orders": {
            "primary_key": "order_id",
            "columns": {
                "order_id": _column("id"),
                "customer_id": _column("id"),
                "amount": _column("numerical"),
                "channel": _column("categorical"),
                "gift": _column("boolean"),
                "ordered_at": _column("datetime"),
                "note": _column("text"),
            },
        },
        "tickets": {
            "primary_key": "ticket_id",
            "columns": {
                "ticket_id": _column("id"),
                "customer_id": _column("id"),
                "priority": _column("categorical"),
                "minutes": _column("numerical"),
                "opened_at": _column("datetime"),
            },
        },
        "stores": {
            "primary_key": "store_id",
            "columns": {"store_id": _column("id"), "size": _column("numerical"), "city": _column("categorical")},
        },
    },
    "relationships": [
        {
            "parent_table_name": "customers",
            "parent_primary_key": "customer_id",
            "child_table_name": "orders",
            "child_foreign_key": "customer_id",
        },
        {
            "parent_table_name": "customers",
            "parent_primary_key": "customer_id",
            "child_table_name": "tickets",
            "child_foreign_key": "customer_id",
        },
    ],
}

CHAIN_METADATA: dict[str, Any] = {
    "tables": {
        "users": {
            "primary_key": "user_id",
            "columns": {
                "user_id": _column("id"),
                "country": _column("categorical"),
                "score": _column("numerical"),
                "beta": _column("boolean"),
            },
        },
        "sessions": {
            "primary_key": "session_id",
            "columns": {
                "session_id": _column("id"),
                "user_id": _column("id"),
                "device": _column("categorical"),
                "seconds": _column("numerical"),
                "started": _column("datetime"),
            },
        },
        "events": {
            "primary_key": "event_id",
            "columns": {
                "event_id": _column("id"),
                "session_id": _column("id"),
                "kind": _column("categorical"),
                "value": _column("numerical"),
            },
        },
    },
    "relationships": [
        {
            "parent_table_name": "users",
            "parent_primary_key": "user_id",
            "child_table_name": "sessions",
            "child_foreign_key": "user_id",
        },
        {
            "parent_table_name": "sessions",
            "parent_primary_key": "session_id",
            "child_table_name": "events",
            "child_foreign_key": "session_id",
        },
    ],
}

COMPOSITE_METADATA: dict[str, Any] = {
    "tables": {
        "invoices": {
            "primary_key": ["shop", "number"],
            "columns": {
                "shop": _column("id"),
                "number": _column("id"),
                "total": _column("numerical"),
                "paid": _column("boolean"),
            },
        },
        "lines": {
            "primary_key": "line_id",
            "columns": {
                "line_id": _column("id"),
                "shop": _column("id"),
                "number": _column("id"),
                "price": _column("numerical"),
            },
        },
    },
    "relationships": [
        {
            "parent_table_name": "invoices",
            "parent_primary_key": ["shop", "number"],
            "child_table_name": "lines",
            "child_foreign_key": ["shop", "number"],
        }
    ],
}


COMPOSITE_NAN_METADATA: dict[str, Any] = {
    "tables": {
        "accounts": {
            "primary_key": ["region", "account"],
            "columns": {"region": _column("id"), "account": _column("id"), "balance": _column("numerical")},
        },
        "payments": {
            "primary_key": "payment_id",
            "columns": {
                "payment_id": _column("id"),
                "region": _column("id"),
                "account": _column("id"),
                "amount": _column("numerical"),
            },
        },
    },
    "relationships": [
        {
            "parent_table_name": "accounts",
            "parent_primary_key": ["region", "account"],
            "child_table_name": "payments",
            "child_foreign_key": ["region", "account"],
        }
    ],
}


def datasets() -> dict[str, tuple[Tables, Tables, dict[str, Any]]]:
    """Every reference dataset: ``{name: (real, synthetic, metadata)}`` (seeded)."""
    rng = np.random.default_rng(20261203)
    return {
        "shop": (_shop(rng, False), _shop(rng, True), SHOP_METADATA),
        "chain": (_chain(rng, False), _chain(rng, True), CHAIN_METADATA),
        "composite": (_composite(rng, False), _composite(rng, True), COMPOSITE_METADATA),
        "composite_nan": (_composite_nan(rng, False), _composite_nan(rng, True), COMPOSITE_NAN_METADATA),
    }
