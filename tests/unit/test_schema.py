"""The schema is described once, by the sqlmodel tables (store/tables.py): a database built by
the numbered migrations (store/migrate.py) must be exactly what they describe, on SQLite and on
PostgreSQL. A migration that adds a column, an index or a default the models do not know (or
the reverse) fails here, not on a user's disk."""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import Engine, MetaData, create_engine, inspect, types
from sqlalchemy.sql.elements import TextClause
from sqlmodel import SQLModel

from pollerd.store import open_store
from pollerd.store import tables as _tables  # registers every table on SQLModel.metadata

Schema = dict[str, dict[str, Any]]
KINDS = (
    (types.Boolean, "bool"),
    (types.Integer, "int"),
    (types.Float, "float"),
    (types.String, "str"),
    (types.LargeBinary, "bytes"),
)


def _kind(type_: Any) -> str:
    """A column type as the family both sides agree on (the models say `AutoString` and `Float`,
    the database `TEXT` and `DOUBLE PRECISION`)."""
    if isinstance(type_, types.TypeDecorator):
        type_ = type_.impl_instance
    return next((kind for family, kind in KINDS if isinstance(type_, family)), repr(type_))


def _default(value: Any) -> str | None:
    """A server default as comparable text: quotes, casts and case dropped
    (`'pending'::text` on PostgreSQL, `'pending'` on SQLite, `pending` in the model)."""
    if value is None:
        return None
    if isinstance(value, TextClause):
        value = value.text
    elif not isinstance(value, str):
        value = str(value.arg if hasattr(value, "arg") else value)
    text = re.sub(r"::[a-z ]+$", "", str(value).strip(), flags=re.IGNORECASE)
    return text.strip("'").lower()


def _where(value: Any) -> str | None:
    """A partial index's predicate as comparable text."""
    if value is None:
        return None
    text = value.text if isinstance(value, TextClause) else str(value)
    return re.sub(r"[()\s]+", " ", text).strip().lower()


def described(metadata: MetaData, dialect: str) -> Schema:
    """What the sqlmodel tables say, in the shape `built` reports."""
    out: Schema = {}
    for table in metadata.sorted_tables:
        pk = {c.name for c in table.primary_key.columns}
        out[table.name] = {
            "columns": {
                c.name: (
                    _kind(c.type),
                    True if c.name in pk else c.nullable,
                    None if c.name in pk else _default(c.server_default and c.server_default.arg),
                )
                for c in table.columns
            },
            "primary_key": tuple(sorted(pk)),
            "unique": sorted(
                tuple(sorted(col.name for col in constraint.columns))
                for constraint in table.constraints
                if type(constraint).__name__ == "UniqueConstraint"
            ),
            "foreign_keys": sorted(
                (fk.parent.name, fk.column.table.name, fk.column.name) for fk in table.foreign_keys
            ),
            "indexes": sorted(
                (
                    index.name,
                    tuple(c.name for c in index.columns),
                    bool(index.unique),
                    _where(index.dialect_options[dialect].get("where")),
                )
                for index in table.indexes
            ),
        }
    return out


def built(engine: Engine) -> Schema:
    """What the migrated database holds, as reflected by SQLAlchemy."""
    inspector = inspect(engine)
    dialect = engine.dialect.name
    out: Schema = {}
    for name in sorted(inspector.get_table_names()):
        pk = set(inspector.get_pk_constraint(name)["constrained_columns"])
        indexes = [i for i in inspector.get_indexes(name) if not i.get("duplicates_constraint")]
        out[name] = {
            "columns": {
                c["name"]: (
                    _kind(c["type"]),
                    # SQLite lets a non-INTEGER primary key hold NULL; no row of ours ever does
                    True if c["name"] in pk else c["nullable"],
                    None if c["name"] in pk else _default(c.get("default")),
                )
                for c in inspector.get_columns(name)
            },
            "primary_key": tuple(sorted(pk)),
            "unique": sorted(
                tuple(sorted(u["column_names"])) for u in inspector.get_unique_constraints(name)
            ),
            "foreign_keys": sorted(
                (column, fk["referred_table"], referred)
                for fk in inspector.get_foreign_keys(name)
                for column, referred in zip(
                    fk["constrained_columns"], fk["referred_columns"], strict=True
                )
            ),
            "indexes": sorted(
                (
                    i["name"],
                    tuple(i["column_names"]),
                    bool(i["unique"]),
                    _where(i.get("dialect_options", {}).get(f"{dialect}_where")),
                )
                for i in indexes
            ),
        }
    return out


def test_migrations_build_exactly_what_the_models_describe(db_url: str) -> None:
    open_store(db_url).close()  # runs every migration
    engine = create_engine(db_url)
    try:
        reality = built(engine)
        dialect = engine.dialect.name
    finally:
        engine.dispose()
    models = described(SQLModel.metadata, dialect)
    assert set(reality) == set(models), "tables differ"
    for name, table in models.items():
        assert reality[name] == table, f"table {name}: migrations and tables.py differ"
    assert _tables.DELIVERY.name in reality


def test_the_check_sees_drift(tmp_path: Any) -> None:
    """Proof the comparison can fail: a column, an index and a default the models do not have."""
    url = f"sqlite:///{tmp_path / 'drift.db'}"
    open_store(url).close()
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql("ALTER TABLE delivery ADD COLUMN extra TEXT DEFAULT 'x'")
            conn.exec_driver_sql("CREATE INDEX event_type ON event (type)")
        reality = built(engine)
    finally:
        engine.dispose()
    models = described(SQLModel.metadata, "sqlite")
    assert reality["delivery"]["columns"]["extra"] == ("str", True, "x")
    assert reality["delivery"] != models["delivery"]
    assert reality["event"]["indexes"] != models["event"]["indexes"]
