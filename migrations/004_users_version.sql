-- version counts the changes of a user (its etag is derived from it) and
-- updated_at says when the last one happened; NULL until the first update,
-- read as created_at. Both are added without rewriting the table.
ALTER TABLE users ADD COLUMN version bigint NOT NULL DEFAULT 1;
ALTER TABLE users ADD COLUMN updated_at timestamptz;

---- create above / drop below ----

ALTER TABLE users DROP COLUMN updated_at;
ALTER TABLE users DROP COLUMN version;
