-- hubauth schema for PostgreSQL, version 5: admins as people and scripts with their own tokens.
-- audit_events.actor names who made a change (a console user, `token:ID`, `cli:USER`);
-- admin_tokens holds `hubauth admin tokens create` tokens as hashes. Additive: the previous
-- release neither reads the table nor the column (its INSERTs leave actor NULL), so
-- hubauth_schema.oldest_reader stays where it is and it keeps serving during a rollout.
ALTER TABLE audit_events ADD COLUMN IF NOT EXISTS actor TEXT;
CREATE INDEX IF NOT EXISTS audit_events_actor ON audit_events(actor, at);
CREATE INDEX IF NOT EXISTS audit_events_user ON audit_events(username, at);
CREATE TABLE IF NOT EXISTS admin_tokens (
    id            TEXT PRIMARY KEY,
    token_hash    TEXT NOT NULL UNIQUE,
    name          TEXT NOT NULL,
    scope         TEXT NOT NULL CHECK (scope IN ('read', 'write')),
    created_by    TEXT NOT NULL,
    created_at    BIGINT NOT NULL,
    expires_at    BIGINT,
    revoked_at    BIGINT,
    last_used_at  BIGINT
);
