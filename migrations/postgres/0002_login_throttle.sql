-- hubauth schema for PostgreSQL, version 2: the password-login throttle, shared by every replica
-- (on SQLite it stays in the one process's memory). Additive: the previous release never reads
-- this table, so hubauth_schema.oldest_reader stays 1 and it keeps serving during a rollout
-- (its own replicas throttle in memory until they are replaced).
CREATE TABLE login_throttle (
    -- HMAC-SHA-256 of what is limited (an address, an account, or both), keyed from
    -- HUBAUTH_CRYPT_KEY when set: never a username or an address itself.
    key  BYTEA PRIMARY KEY,
    -- GCRA theoretical arrival time, Unix nanoseconds by hubauth's clock. At or before now the
    -- key has its full allowance again, the same as absent: such rows are deleted.
    tat  BIGINT NOT NULL
);
CREATE INDEX login_throttle_tat ON login_throttle(tat);
