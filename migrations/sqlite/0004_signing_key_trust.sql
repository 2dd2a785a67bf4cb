-- A retired key leaves the JWKS at `expires_at` (its ID tokens have expired by then) but still
-- verifies our own tokens presented back to us, such as a logout's id_token_hint, until
-- `verify_until`: as long as a session it signed for can be alive. Purged after both.
ALTER TABLE signing_keys ADD COLUMN verify_until INTEGER;
