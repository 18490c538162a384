-- The token subject (OIDC "sub") of the caller who created this user by
-- self sign-up; NULL for users created by a caller with users:write. One
-- user per subject: store/ recognises a violation by this index's name.
ALTER TABLE users ADD COLUMN subject text;
CREATE UNIQUE INDEX users_subject_key ON users (subject);

---- create above / drop below ----

ALTER TABLE users DROP COLUMN subject;
