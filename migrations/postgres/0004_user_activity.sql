-- hubauth schema for PostgreSQL, version 4: a user's last token use and whether an administrator
-- blocked them (`hubauth report activity`, `hubauth deprovision`). Additive: two nullable
-- columns the previous release never reads, so hubauth_schema.oldest_reader stays where it is and
-- that release keeps serving during a rollout (its replicas neither record token use nor refuse
-- a blocked user's sign-in until they are replaced; a block also revokes every token, which
-- they do honour).
ALTER TABLE users ADD COLUMN IF NOT EXISTS last_token_use_at BIGINT;
ALTER TABLE users ADD COLUMN IF NOT EXISTS blocked_at BIGINT;
