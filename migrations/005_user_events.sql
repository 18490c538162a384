-- The change feed: one row per change to a user, written in the
-- transaction of the change. Rows are ordered by (xid, seq): xid is the
-- writing transaction's id, seq their order in the table. A reader serves
-- only rows whose xid is below the xmin of its snapshot, that is rows of
-- transactions that have all ended: no row can appear later before them,
-- so a reader continuing from its last (xid, seq) misses nothing, however
-- the transactions interleave. xid is the 64-bit xid8 as bigint, which
-- every pgx query mode passes as a plain integer.
CREATE TABLE user_events (
    xid         bigint      NOT NULL DEFAULT pg_current_xact_id()::text::bigint,
    seq         bigint      GENERATED ALWAYS AS IDENTITY,
    type        smallint    NOT NULL CHECK (type BETWEEN 1 AND 3), -- created, updated, deleted
    user_id     uuid        NOT NULL,
    -- The user after the change; email and full_name are NULL for a
    -- deletion and for every event of a user erased since (erased).
    email       text,
    full_name   text,
    created_at  timestamptz,
    updated_at  timestamptz,
    version     bigint,
    erased      boolean     NOT NULL DEFAULT false,
    occurred_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (xid, seq)
);

-- Erasure finds a user's earlier events by id.
CREATE INDEX user_events_user_id ON user_events (user_id);

-- The horizon: the newest event retention has deleted. A cursor before it
-- has lost events, and is answered out_of_range.
CREATE TABLE user_event_horizon (
    one boolean PRIMARY KEY DEFAULT true CHECK (one),
    xid bigint  NOT NULL,
    seq bigint  NOT NULL
);
INSERT INTO user_event_horizon (xid, seq) VALUES (0, 0);

-- Webhooks receive the feed. cursor_* is the last event acknowledged (or
-- given up on); deliveries go out in order, one webhook at a time.
CREATE TABLE webhooks (
    id            uuid        PRIMARY KEY,
    url           text        NOT NULL,
    types         smallint[]  NOT NULL DEFAULT '{}', -- empty: every type
    secret        bytea       NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    cursor_xid    bigint      NOT NULL,
    cursor_seq    bigint      NOT NULL,
    failures      integer     NOT NULL DEFAULT 0, -- failed attempts at the next event
    failing_since timestamptz,                    -- first failure at the next event
    last_error    text
);

---- create above / drop below ----

DROP TABLE webhooks;
DROP TABLE user_event_horizon;
DROP TABLE user_events;
