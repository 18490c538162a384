-- When the welcome mail was sent; NULL until then. The welcome worker sets
-- it in the transaction that completes the job, and skips users that have it.
ALTER TABLE users ADD COLUMN welcomed_at timestamptz;

---- create above / drop below ----

ALTER TABLE users DROP COLUMN welcomed_at;
