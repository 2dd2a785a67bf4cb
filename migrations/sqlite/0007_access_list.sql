-- The runtime allow-list: people hub admins admit beside the configured [access] rules
-- (`hubauth access allow`, POST /admin/api/access).
CREATE TABLE access_entries (
    id          TEXT PRIMARY KEY,
    -- username | email | login
    kind        TEXT NOT NULL CHECK (kind IN ('username', 'email', 'login')),
    -- The connector of a login; '' for the other kinds (so the unique index covers them).
    connector_id TEXT NOT NULL DEFAULT '',
    -- As the admin gave it, and the form it is matched in (lower case).
    value       TEXT NOT NULL,
    value_key   TEXT NOT NULL,
    groups_json TEXT NOT NULL DEFAULT '[]',
    note        TEXT,
    expires_at  INTEGER,
    created_by  TEXT NOT NULL,
    created_at  INTEGER NOT NULL
);
CREATE UNIQUE INDEX access_entries_selector ON access_entries(kind, connector_id, value_key);
