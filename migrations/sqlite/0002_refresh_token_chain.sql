-- Each refresh token remembers what it was rotated into and the access token issued with it, so a
-- retry of a refresh whose answer was lost can be told apart from reuse ([tokens]
-- refresh_token_reuse_grace) and the pair it replaces withdrawn. Older rows have neither: a
-- retry with one of them is reuse, as before.
ALTER TABLE refresh_tokens ADD COLUMN replaced_by TEXT;
ALTER TABLE refresh_tokens ADD COLUMN access_hash TEXT;
