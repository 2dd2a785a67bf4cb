-- hubauth schema, version 1. Timestamps are Unix seconds. Bearer values (codes, tokens, cookies)
-- are stored only as SHA-256 hashes. Tables keyed by such a hash are WITHOUT ROWID: one b-tree
-- each, so issuing a token writes one page per row instead of two (table and key index).

CREATE TABLE users (
    id              TEXT PRIMARY KEY,          -- the OIDC `sub`: random, never reused
    username        TEXT NOT NULL UNIQUE,
    name            TEXT,
    email           TEXT,
    email_verified  INTEGER NOT NULL DEFAULT 0,
    groups_json     TEXT NOT NULL DEFAULT '[]',
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL,
    last_login_at   INTEGER
);

-- Which upstream account is which user. (connector, upstream subject) never moves to another user.
-- The latest login through it is kept here too: the raw memberships the upstream reported and
-- its tokens, sealed (AES-256-GCM, bound to this row's connector and subject).
CREATE TABLE user_identities (
    connector_id      TEXT NOT NULL,
    upstream_subject  TEXT NOT NULL,
    user_id           TEXT NOT NULL REFERENCES users(id),
    created_at        INTEGER NOT NULL,
    memberships_json  TEXT NOT NULL DEFAULT '[]',
    upstream_username TEXT,                 -- as the provider gave it, before the username rule
    tokens_sealed     TEXT,
    tokens_expire_at  INTEGER,
    refreshed_at      INTEGER,
    PRIMARY KEY (connector_id, upstream_subject)
);
CREATE INDEX user_identities_user ON user_identities(user_id);

CREATE TABLE browser_sessions (
    id           TEXT PRIMARY KEY,
    token_hash   TEXT NOT NULL UNIQUE,
    user_id      TEXT NOT NULL REFERENCES users(id),
    connector_id TEXT NOT NULL,
    csrf_token   TEXT NOT NULL,
    auth_time    INTEGER NOT NULL,
    created_at   INTEGER NOT NULL,
    expires_at   INTEGER NOT NULL,
    ended_at     INTEGER
);
CREATE INDEX browser_sessions_user ON browser_sessions(user_id);

-- An authorization request waiting for the person to log in.
CREATE TABLE pending_authorizations (
    id                    TEXT PRIMARY KEY,
    request_json          TEXT NOT NULL,
    browser_binding_hash  TEXT NOT NULL,
    csrf_token            TEXT NOT NULL,
    created_at            INTEGER NOT NULL,
    expires_at            INTEGER NOT NULL
) WITHOUT ROWID;

-- A trip to an upstream provider: what to check when the browser comes back. Single use.
CREATE TABLE upstream_attempts (
    state_hash     TEXT PRIMARY KEY,
    pending_id     TEXT NOT NULL,
    connector_id   TEXT NOT NULL,
    pkce_verifier  TEXT NOT NULL,
    nonce          TEXT NOT NULL,
    created_at     INTEGER NOT NULL,
    expires_at     INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE authorization_codes (
    code_hash    TEXT PRIMARY KEY,
    client_id    TEXT NOT NULL,
    user_id      TEXT NOT NULL REFERENCES users(id),
    session_id   TEXT,
    request_json TEXT NOT NULL,
    auth_time    INTEGER NOT NULL,
    created_at   INTEGER NOT NULL,
    expires_at   INTEGER NOT NULL,
    used_at      INTEGER,
    grant_id     TEXT                     -- what the code was exchanged for; revoked on replay
) WITHOUT ROWID;

-- A grant is one token family: everything issued from one code and its refreshes.
CREATE TABLE grants (
    id          TEXT PRIMARY KEY,
    client_id   TEXT NOT NULL,
    user_id     TEXT NOT NULL REFERENCES users(id),
    session_id  TEXT,
    scope       TEXT NOT NULL,
    auth_time   INTEGER NOT NULL,
    created_at  INTEGER NOT NULL,
    revoked_at  INTEGER,
    revoked_reason TEXT
);
CREATE INDEX grants_user ON grants(user_id);

CREATE TABLE access_tokens (
    token_hash  TEXT PRIMARY KEY,
    grant_id    TEXT NOT NULL REFERENCES grants(id),
    scope       TEXT NOT NULL,            -- may be narrower than the grant's after a refresh
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL,
    revoked_at  INTEGER
) WITHOUT ROWID;

CREATE TABLE refresh_tokens (
    token_hash  TEXT PRIMARY KEY,
    grant_id    TEXT NOT NULL REFERENCES grants(id),
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL,
    used_at     INTEGER                   -- set when rotated; presenting it again is reuse
) WITHOUT ROWID;

CREATE TABLE signing_keys (
    kid           TEXT PRIMARY KEY,
    alg           TEXT NOT NULL,
    private_pkcs8 BLOB NOT NULL,
    created_at    INTEGER NOT NULL,
    rotated_at    INTEGER,                -- no longer signs
    expires_at    INTEGER                 -- no longer published after this
);

-- What happened, for operators: sign-ins, refusals and why, revocations. Never secrets.
CREATE TABLE audit_events (
    id            INTEGER PRIMARY KEY,
    at            INTEGER NOT NULL,
    kind          TEXT NOT NULL,            -- login, login_denied, ...
    reason        TEXT,                     -- a policy reason code
    username      TEXT,
    user_id       TEXT,
    connector_id  TEXT,
    client_id     TEXT,
    request_id    TEXT,
    detail        TEXT                      -- a sentence for people
);
CREATE INDEX audit_events_at ON audit_events(at);

-- Workshop invites: a link that admits whoever opens it and signs in, with groups to grant.
CREATE TABLE invites (
    id            TEXT PRIMARY KEY,         -- short, for admins (list / revoke)
    token_hash    TEXT NOT NULL UNIQUE,     -- the link's secret, hashed
    note          TEXT,
    groups_json   TEXT NOT NULL DEFAULT '[]',
    connector_id  TEXT,                     -- only this connector, if set
    max_uses      INTEGER,                  -- distinct people; NULL = unlimited
    uses          INTEGER NOT NULL DEFAULT 0,
    created_at    INTEGER NOT NULL,
    expires_at    INTEGER NOT NULL,
    revoked_at    INTEGER
);

CREATE TABLE invite_redemptions (
    invite_id  TEXT NOT NULL REFERENCES invites(id),
    user_id    TEXT NOT NULL REFERENCES users(id),
    at         INTEGER NOT NULL,
    PRIMARY KEY (invite_id, user_id)
);
CREATE INDEX invite_redemptions_user ON invite_redemptions(user_id);

-- Access tokens of service accounts (client_credentials): no user behind them.
CREATE TABLE service_tokens (
    token_hash  TEXT PRIMARY KEY,
    client_id   TEXT NOT NULL,
    scope       TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL,
    revoked_at  INTEGER
) WITHOUT ROWID;
