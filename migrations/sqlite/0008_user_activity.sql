-- Who is still active, and who an administrator took out (`hubauth report activity`,
-- `hubauth deprovision`). last_token_use_at: the latest userinfo, refresh or token exchange,
-- written at most once a minute per user (the hot paths stay write-free in between).
-- blocked_at: set by `hubauth deprovision --block`; such a user cannot sign in again.
ALTER TABLE users ADD COLUMN last_token_use_at INTEGER;
ALTER TABLE users ADD COLUMN blocked_at INTEGER;
