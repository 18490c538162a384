-- The change feed of the feed phase: one "created" event per seeded user
-- 1..:n (psql variables n and per), the row usersd's CreateUser writes,
-- in transactions of :per events each (as group commit writes them), so
-- that pages cross transaction ids as a real feed's do. seed.sql inserts
-- users without events, and making :n of them through the API would take
-- minutes of the phase.
SELECT format($$INSERT INTO user_events (type, user_id, email, full_name, created_at, updated_at, version)
  SELECT 1, bench_id(n), 'user' || n || '@example.com', 'Bench User ' || n, bench_created(n), bench_created(n), 1
    FROM generate_series(%s, %s) AS n$$, lo, least(lo + :per - 1, :n))
  FROM generate_series(1, :n, :per) AS lo
\gexec
VACUUM (ANALYZE) user_events;
