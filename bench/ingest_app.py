"""The ingestion benchmark's app and server: the production app plus a bare baseline route (only
here), served exactly as ``resistry serve`` serves (:func:`engine.server.serve`).

    python -m bench.ingest_app --port 8000 --workers 2

Settings come from the environment the benchmark sets (database URL, secret key, webhook key).
"""

from __future__ import annotations

import sys
from typing import Any

import orjson
import sqlalchemy as sa
from flask import Flask, jsonify, request

from bench.ingest_data import RAW_EVENTS
from engine.app import create_app, csrf
from engine.db import get_session


def build() -> Flask:
    """The app with ``POST /bench/baseline``: the same middleware, server and connection pool
    as ``POST /webhooks/sendgrid``, the least work any store of a batch can do."""
    app = create_app()
    insert_sql: dict[tuple[str, int], str] = {}

    @csrf.exempt
    def baseline() -> Any:
        # Parse, then one multi-row INSERT of each event's JSON text (no signature, no checks).
        rows = [orjson.dumps(element).decode() for element in orjson.loads(request.get_data())]
        session = get_session()
        connection = session.connection()
        dialect = connection.dialect
        key = (dialect.name, len(rows))
        if key not in insert_sql:
            values = [{"body": sa.bindparam(f"b{i}")} for i in range(len(rows))]
            insert_sql[key] = str(sa.insert(RAW_EVENTS).values(values).compile(dialect=dialect))
        if dialect.paramstyle in ("qmark", "format", "numeric"):
            connection.exec_driver_sql(insert_sql[key], tuple(rows))
        else:
            connection.exec_driver_sql(insert_sql[key], {f"b{i}": r for i, r in enumerate(rows)})
        session.commit()
        return jsonify(received=len(rows))

    app.add_url_rule("/bench/baseline", "bench_baseline", baseline, methods=["POST"])
    return app


def main(argv: list[str]) -> int:
    from bench.common import serve_bench_app

    return serve_bench_app(build, "Serve the ingestion benchmark's app.", argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
