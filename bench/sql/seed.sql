-- Seeds users :lo to :hi (psql variables), then refreshes statistics.
INSERT INTO users (id, email, full_name, created_at)
SELECT bench_id(n), 'user' || n || '@example.com', 'Bench User ' || n, bench_created(n)
FROM generate_series(:lo::bigint, :hi::bigint) AS n;
VACUUM (ANALYZE) users;
