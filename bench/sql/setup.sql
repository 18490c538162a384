-- Helpers of bench/run.sh, created in the throwaway bench database only.
-- run.sh replaces __T0MS__ with a Unix time in milliseconds a little in the
-- past: seeded user n was "created" n ms before it.

-- The seeded id of user n: a valid UUIDv7 whose 48-bit timestamp is the
-- user's created_at in ms (so ids sort by created_at), and whose random bits
-- come from md5(n). Deterministic, so pgbench can look up a random seeded
-- user by number without a lookup table; inlined by the planner.
CREATE OR REPLACE FUNCTION bench_id(n bigint) RETURNS uuid
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT (lpad(to_hex(__T0MS__ - n), 12, '0') || '7' || substr(md5(n::text), 1, 3)
          || substr('89ab', (n % 4)::int + 1, 1) || substr(md5(n::text), 4, 15))::uuid
$$;

CREATE OR REPLACE FUNCTION bench_created(n bigint) RETURNS timestamptz
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT timestamptz 'epoch' + (__T0MS__ - n) * interval '1 millisecond'
$$;

-- A UUIDv7 for now, for the pgbench CreateUser transaction (usersd makes
-- its ids in Go; pgbench cannot).
CREATE OR REPLACE FUNCTION bench_v7() RETURNS uuid
LANGUAGE sql VOLATILE AS $$
  SELECT encode(set_bit(set_bit(overlay(uuid_send(gen_random_uuid())
    placing substring(int8send((extract(epoch FROM clock_timestamp()) * 1000)::bigint) FROM 3)
    FROM 1 FOR 6), 52, 1), 53, 1), 'hex')::uuid
$$;
