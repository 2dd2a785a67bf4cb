-- Admins as people and scripts with their own tokens. audit_events.actor: who made a change
-- (a username signed in to the console, `token:ID` for an admin API token, `cli:USER`); NULL for
-- what no one did by hand (sign-ins, refreshes). admin_tokens: API tokens made by
-- `hubauth admin tokens create`, stored as a hash, with a scope and an expiry.
ALTER TABLE audit_events ADD COLUMN actor TEXT;
CREATE INDEX audit_events_actor ON audit_events(actor, at);
CREATE INDEX audit_events_user ON audit_events(username, at);
CREATE TABLE admin_tokens (
    id            TEXT PRIMARY KEY,       -- short, for admins (list / revoke) and the audit log
    token_hash    TEXT NOT NULL UNIQUE,
    name          TEXT NOT NULL,          -- what it is for
    scope         TEXT NOT NULL CHECK (scope IN ('read', 'write')),
    created_by    TEXT NOT NULL,
    created_at    INTEGER NOT NULL,
    expires_at    INTEGER,                -- NULL: until revoked
    revoked_at    INTEGER,
    last_used_at  INTEGER                 -- written at most once a minute
);
