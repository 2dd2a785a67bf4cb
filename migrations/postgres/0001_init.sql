-- hubauth schema for PostgreSQL, version 1: the same tables as SQLite at its migration 6.
-- Timestamps are Unix seconds (BIGINT, set by hubauth's clock, not the server's). Bearer values
-- (codes, tokens, cookies) are stored only as SHA-256 hashes.
-- Rolling upgrades: a later migration only adds (tables, nullable columns, indexes) so the
-- previous release keeps working against the new schema while replicas are replaced.

CREATE TABLE users (
    id              TEXT PRIMARY KEY,          -- the OIDC `sub`: random, never reused
    username        TEXT NOT NULL,
    name            TEXT,
    email           TEXT,
    email_verified  BOOLEAN NOT NULL DEFAULT FALSE,
    groups_json     TEXT NOT NULL DEFAULT '[]',
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL,
    last_login_at   BIGINT,
    CONSTRAINT users_username_key UNIQUE (username)
);
CREATE INDEX users_verified_email ON users(email) WHERE email_verified;

-- Which upstream account is which user. (connector, upstream subject) never moves to another user.
CREATE TABLE user_identities (
    connector_id      TEXT NOT NULL,
    upstream_subject  TEXT NOT NULL,
    user_id           TEXT NOT NULL REFERENCES users(id),
    created_at        BIGINT NOT NULL,
    -- Ties in created_at are broken by insertion order (SQLite's rowid).
    seq               BIGSERIAL NOT NULL,
    memberships_json  TEXT NOT NULL DEFAULT '[]',
    upstream_username TEXT,
    tokens_sealed     TEXT,
    tokens_expire_at  BIGINT,
    refreshed_at      BIGINT,
    CONSTRAINT user_identities_pkey PRIMARY KEY (connector_id, upstream_subject)
);
CREATE INDEX user_identities_user ON user_identities(user_id);

CREATE TABLE browser_sessions (
    id           TEXT PRIMARY KEY,
    token_hash   TEXT NOT NULL UNIQUE,
    user_id      TEXT NOT NULL REFERENCES users(id),
    connector_id TEXT NOT NULL,
    csrf_token   TEXT NOT NULL,
    auth_time    BIGINT NOT NULL,
    created_at   BIGINT NOT NULL,
    expires_at   BIGINT NOT NULL,
    ended_at     BIGINT
);
CREATE INDEX browser_sessions_user ON browser_sessions(user_id);
CREATE INDEX browser_sessions_expiry ON browser_sessions(expires_at);

CREATE TABLE pending_authorizations (
    id                    TEXT PRIMARY KEY,
    request_json          TEXT NOT NULL,
    browser_binding_hash  TEXT NOT NULL,
    csrf_token            TEXT NOT NULL,
    client_address        TEXT NOT NULL DEFAULT '',
    created_at            BIGINT NOT NULL,
    expires_at            BIGINT NOT NULL
);
CREATE INDEX pending_authorizations_browser ON pending_authorizations(browser_binding_hash, created_at);
CREATE INDEX pending_authorizations_address ON pending_authorizations(client_address, expires_at);
CREATE INDEX pending_authorizations_expiry ON pending_authorizations(expires_at);

CREATE TABLE upstream_attempts (
    state_hash     TEXT PRIMARY KEY,
    pending_id     TEXT NOT NULL,
    connector_id   TEXT NOT NULL,
    pkce_verifier  TEXT NOT NULL,
    nonce          TEXT NOT NULL,
    created_at     BIGINT NOT NULL,
    expires_at     BIGINT NOT NULL
);
CREATE INDEX upstream_attempts_pending ON upstream_attempts(pending_id, created_at);
CREATE INDEX upstream_attempts_expiry ON upstream_attempts(expires_at);

CREATE TABLE authorization_codes (
    code_hash    TEXT PRIMARY KEY,
    client_id    TEXT NOT NULL,
    user_id      TEXT NOT NULL REFERENCES users(id),
    session_id   TEXT,
    request_json TEXT NOT NULL,
    auth_time    BIGINT NOT NULL,
    created_at   BIGINT NOT NULL,
    expires_at   BIGINT NOT NULL,
    used_at      BIGINT,
    grant_id     TEXT
);
CREATE INDEX authorization_codes_expiry ON authorization_codes(expires_at);

CREATE TABLE grants (
    id          TEXT PRIMARY KEY,
    client_id   TEXT NOT NULL,
    user_id     TEXT NOT NULL REFERENCES users(id),
    session_id  TEXT,
    scope       TEXT NOT NULL,
    auth_time   BIGINT NOT NULL,
    created_at  BIGINT NOT NULL,
    revoked_at  BIGINT,
    revoked_reason TEXT
);
CREATE INDEX grants_user ON grants(user_id);

CREATE TABLE access_tokens (
    token_hash  TEXT PRIMARY KEY,
    grant_id    TEXT NOT NULL REFERENCES grants(id),
    scope       TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL,
    revoked_at  BIGINT
);
CREATE INDEX access_tokens_expiry ON access_tokens(expires_at);

CREATE TABLE refresh_tokens (
    token_hash  TEXT PRIMARY KEY,
    grant_id    TEXT NOT NULL REFERENCES grants(id),
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL,
    used_at     BIGINT,
    replaced_by TEXT,
    access_hash TEXT
);
CREATE INDEX refresh_tokens_expiry ON refresh_tokens(expires_at);

CREATE TABLE signing_keys (
    kid            TEXT PRIMARY KEY,
    alg            TEXT NOT NULL,
    private_pkcs8  BYTEA,
    private_sealed TEXT,
    created_at     BIGINT NOT NULL,
    rotated_at     BIGINT,
    expires_at     BIGINT,
    verify_until   BIGINT,
    CHECK ((private_pkcs8 IS NULL) <> (private_sealed IS NULL))
);
CREATE UNIQUE INDEX signing_keys_one_active ON signing_keys (alg) WHERE rotated_at IS NULL;

CREATE TABLE audit_events (
    id            BIGSERIAL PRIMARY KEY,
    at            BIGINT NOT NULL,
    kind          TEXT NOT NULL,
    reason        TEXT,
    username      TEXT,
    user_id       TEXT,
    connector_id  TEXT,
    client_id     TEXT,
    request_id    TEXT,
    detail        TEXT
);
CREATE INDEX audit_events_at ON audit_events(at);

CREATE TABLE invites (
    id            TEXT PRIMARY KEY,
    token_hash    TEXT NOT NULL UNIQUE,
    note          TEXT,
    groups_json   TEXT NOT NULL DEFAULT '[]',
    connector_id  TEXT,
    max_uses      BIGINT,
    uses          BIGINT NOT NULL DEFAULT 0,
    created_at    BIGINT NOT NULL,
    expires_at    BIGINT NOT NULL,
    revoked_at    BIGINT
);

CREATE TABLE invite_redemptions (
    invite_id  TEXT NOT NULL REFERENCES invites(id),
    user_id    TEXT NOT NULL REFERENCES users(id),
    at         BIGINT NOT NULL,
    PRIMARY KEY (invite_id, user_id)
);
CREATE INDEX invite_redemptions_user ON invite_redemptions(user_id);

CREATE TABLE service_tokens (
    token_hash  TEXT PRIMARY KEY,
    client_id   TEXT NOT NULL,
    scope       TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL,
    revoked_at  BIGINT
);

-- Which releases can work on this database: a migration that the previous release could not
-- live with (a dropped or renamed column) raises oldest_reader to its own version; additive ones
-- leave it, so during a rolling upgrade the old replicas keep serving beside the new ones.
CREATE TABLE hubauth_schema (
    id             INTEGER PRIMARY KEY CHECK (id = 1),
    oldest_reader  BIGINT NOT NULL
);
INSERT INTO hubauth_schema (id, oldest_reader) VALUES (1, 1);
