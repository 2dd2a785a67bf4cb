-- hubauth schema for PostgreSQL, version 3: the runtime allow-list, people hub admins admit
-- beside the configured [access] rules. Additive: the previous release never reads this table,
-- so hubauth_schema.oldest_reader stays 1 and it keeps serving during a rollout (its replicas
-- do not apply the allow-list until they are replaced).
CREATE TABLE access_entries (
    id           TEXT PRIMARY KEY,
    kind         TEXT NOT NULL CHECK (kind IN ('username', 'email', 'login')),
    -- The connector of a login; '' for the other kinds (so the unique index covers them).
    connector_id TEXT NOT NULL DEFAULT '',
    -- As the admin gave it, and the form it is matched in (lower case).
    value        TEXT NOT NULL,
    value_key    TEXT NOT NULL,
    groups_json  TEXT NOT NULL DEFAULT '[]',
    note         TEXT,
    expires_at   BIGINT,
    created_by   TEXT NOT NULL,
    created_at   BIGINT NOT NULL
);
CREATE UNIQUE INDEX access_entries_selector ON access_entries(kind, connector_id, value_key);
