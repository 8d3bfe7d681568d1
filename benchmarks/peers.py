"""The same snapshot computed by peers: Polars and scipy (``polars_peer``), DuckDB (SQL,
power iteration in a loop) and the numpy oracle. Used by the benchmarks to time the
model as others would run it. Each returns the influence per user, or a result whose
``influence`` it is."""

from __future__ import annotations

from typing import Any

import numpy as np

from scoresvc import reference
from scoresvc.core.events import EventLog
from scoresvc.core.model import AccountStatus, ModelParams


def polars_influence(log: EventLog, now: float, params: ModelParams) -> Any:
    """Influence per user, with the peer's phases (``polars_peer.PeerResult``)."""
    from polars_peer import polars_scipy

    return polars_scipy(log, now, params)


def numpy_influence(log: EventLog, now: float, params: ModelParams) -> np.ndarray:
    """Influence per user from the numpy reference (scoresvc.reference)."""
    return reference.compute(log, now, params).influence


def duckdb_influence(
    log: EventLog,
    now: float,
    params: ModelParams,
    *,
    threads: int = 2,
    tolerance: float = 1e-12,
    max_iterations: int = 2000,
) -> np.ndarray:
    """Influence per user, docs/model.md steps 1-8 in DuckDB SQL; the power iteration
    runs as one query per step with the oracle's stopping rule."""
    import duckdb

    con = duckdb.connect()
    con.execute(f"SET threads TO {int(threads)}")
    h, d = params.half_life_seconds, params.damping
    kw = params.kind_weights
    ev = {"a": log.actor, "b": log.target, "k": log.kind.astype(np.int32), "ts": log.ts}
    en = {
        "a": log.endorser,
        "b": log.endorsee,
        "t": log.topic,
        "ts": log.endorse_ts,
        "x": log.retracted,
    }
    status = np.asarray(log.status)
    users = {
        "u": np.arange(log.n_users, dtype=np.int64),
        "suspended": status == AccountStatus.SUSPENDED,
        "seed": status == AccountStatus.SEED,
    }
    con.register("ev", ev)
    con.register("en", en)
    con.register("users", users)
    decay = f"pow(2.0, -({now!r} - ts) / {h!r})"
    con.execute(f"""
        CREATE TABLE w AS
        SELECT a, b,
               sum(CASE WHEN k = 1 THEN {kw[0]!r} * {decay} ELSE 0 END) AS w1,
               sum(CASE WHEN k = 2 THEN {kw[1]!r} * {decay} ELSE 0 END) AS w2,
               sum(CASE WHEN k = 3 THEN {kw[2]!r} * {decay} ELSE 0 END) AS w3,
               sum(CASE WHEN k = 4 THEN {kw[3]!r} * {decay} ELSE 0 END) AS w4
        FROM ev GROUP BY a, b""")
    con.execute(f"""
        CREATE TABLE e AS
        SELECT a, b, sum({params.endorsement_weight!r} * {decay}) AS e
        FROM (SELECT *, row_number() OVER (
                  PARTITION BY a, b, t ORDER BY ts DESC, x DESC) AS rn FROM en)
        WHERE rn = 1 AND NOT x GROUP BY a, b""")
    con.execute("""
        CREATE TABLE pairs AS
        SELECT coalesce(w.a, e.a) AS a, coalesce(w.b, e.b) AS b,
               coalesce(w1, 0) AS w1, coalesce(w2, 0) AS w2, coalesce(w3, 0) AS w3,
               coalesce(w4, 0) AS w4, coalesce(e.e, 0) AS e
        FROM w FULL OUTER JOIN e ON w.a = e.a AND w.b = e.b""")
    # Step 3: a pair's matched volume, gated by both ends' support from elsewhere,
    # which counts established senders (first seen at least M before now) only.
    _first_seen(con, log)
    con.execute(f"""
        CREATE TABLE est AS
        SELECT users.u, CASE WHEN seen.fs <= {now - params.maturity_age_seconds!r}
                             THEN 1.0 ELSE 0.0 END AS z
        FROM users LEFT JOIN seen USING (u)""")
    con.execute("""
        CREATE TABLE vol AS
        SELECT a, b, w1 + w2 + w3 + w4 AS raw, e, w1 + w2 + w3 + w4 + e AS v FROM pairs""")
    con.execute("""
        CREATE TABLE support AS
        SELECT vol.b AS u, sum(est.z * vol.v) AS s FROM vol JOIN est ON est.u = vol.a
        GROUP BY vol.b""")
    con.execute(f"""
        CREATE TABLE shares AS
        SELECT p.a, p.b, p.raw, p.e,
               CASE WHEN r.v IS NULL OR p.v <= 0 OR r.v <= 0 THEN 0.0
                    ELSE {params.reciprocity!r} * least(p.v, r.v) / p.v
                         * (1 - pow(greatest(0.0, least(1.0,
                               CASE WHEN sa.s > 0 THEN 1 - zb.z * r.v / sa.s ELSE 0 END,
                               CASE WHEN sb.s > 0 THEN 1 - za.z * p.v / sb.s ELSE 0 END)), 2))
               END AS share
        FROM vol p LEFT JOIN vol r ON r.a = p.b AND r.b = p.a
        LEFT JOIN support sa ON sa.u = p.a LEFT JOIN support sb ON sb.u = p.b
        JOIN est za ON za.u = p.a JOIN est zb ON zb.u = p.b""")
    con.execute("""
        CREATE TABLE pen AS
        SELECT a, b, raw, e, ln(1 + raw * (1 - share)) AS s, e * (1 - share) AS ep
        FROM shares""")
    con.execute(f"""
        CREATE TABLE beta AS
        SELECT a, CASE WHEN sum(e) > {params.endorsement_budget!r}
                       THEN {params.endorsement_budget!r} / sum(e) ELSE 1.0 END AS beta
        FROM pairs GROUP BY a""")
    con.execute(f"""
        CREATE TABLE edges AS
        WITH g AS (
            SELECT pen.a, pen.b, pen.s + beta.beta * pen.ep AS g,
                   ln(1 + pen.raw) + beta.beta * pen.e AS dpart
            FROM pen JOIN beta USING (a))
        SELECT g.a, g.b,
               g.g / greatest(sum(g.dpart) OVER (PARTITION BY g.a), {params.min_row_weight!r}) AS p
        FROM g
        JOIN users ua ON ua.u = g.a JOIN users ub ON ub.u = g.b
        WHERE NOT ua.suspended AND NOT ub.suspended""")
    con.execute("DELETE FROM edges WHERE p <= 0 OR isnan(p)")
    _teleport(con, log, now, params)
    con.execute("CREATE TABLE c AS SELECT u, p AS v FROM tele")
    for _ in range(max_iterations):
        con.execute(f"""
            CREATE OR REPLACE TABLE flow AS
            SELECT edges.b AS u, {d!r} * sum(edges.p * c.v) AS f
            FROM edges JOIN c ON edges.a = c.u GROUP BY edges.b""")
        con.execute("""
            CREATE OR REPLACE TABLE c2 AS
            SELECT tele.u, coalesce(flow.f, 0)
                   + (1 - (SELECT coalesce(sum(f), 0) FROM flow)) * tele.p AS v
            FROM tele LEFT JOIN flow USING (u)""")
        (change,) = con.execute("SELECT sum(abs(c2.v - c.v)) FROM c2 JOIN c USING (u)").fetchone()
        con.execute("DROP TABLE c")
        con.execute("ALTER TABLE c2 RENAME TO c")
        if change < tolerance:
            break
    result = con.execute("SELECT u, v FROM c ORDER BY u").fetchnumpy()
    credibility = np.zeros(log.n_users)
    credibility[result["u"]] = result["v"]
    members = ~users["suspended"]
    return np.where(members, credibility * members.sum(), 0.0)


def _first_seen(con: Any, log: EventLog) -> None:
    """Table ``seen(u, fs)``: when each user was first seen, the log's column or else
    the earliest event naming the user."""
    if log.first_seen is not None:
        con.register("seen", {"u": np.arange(log.n_users), "fs": log.first_seen})
    else:
        con.execute("""
            CREATE TABLE seen AS SELECT u, min(t) AS fs FROM (
                SELECT a AS u, ts AS t FROM ev UNION ALL SELECT b, ts FROM ev
                UNION ALL SELECT a, ts FROM en UNION ALL SELECT b, ts FROM en) GROUP BY u""")


def _teleport(con: Any, log: EventLog, now: float, params: ModelParams) -> None:
    """Step 7's p as table ``tele(u, p)``, normalised: each member's maturity (age since
    first seen over the maturity age, capped at 1; first seen from table ``seen``),
    blended with the seeds."""
    m, alpha = params.maturity_age_seconds, params.seed_prior_share
    con.execute(f"""
        CREATE TABLE grown AS
        SELECT users.u, users.seed AND NOT users.suspended AS seed, NOT users.suspended AS member,
               CASE WHEN users.suspended OR seen.fs IS NULL THEN 0.0
                    ELSE least(1.0, greatest(0.0, ({now!r} - seen.fs) / {m!r})) END AS g
        FROM users LEFT JOIN seen USING (u)""")
    con.execute(f"""
        CREATE TABLE tele AS
        WITH totals AS (SELECT sum(g) AS total, count(*) FILTER (WHERE seed) AS seeds
                        FROM grown)
        SELECT u, CASE WHEN seeds = 0 AND total > 0 THEN g
                       WHEN seeds = 0 THEN member::DOUBLE
                       WHEN total <= 0 THEN seed::DOUBLE
                       ELSE {alpha!r} * seed::DOUBLE + (1 - {alpha!r}) * seeds * g / total
                  END AS p
        FROM grown, totals""")
    con.execute(
        "CREATE OR REPLACE TABLE tele AS SELECT u, p / (SELECT sum(p) FROM tele) AS p FROM tele"
    )


PEERS = {"polars": polars_influence, "duckdb": duckdb_influence, "numpy": numpy_influence}
