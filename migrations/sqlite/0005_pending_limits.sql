-- Bounded pending sign-ins (a stranger can start as many as they like): each remembers the
-- address it came from, and the caps and the purge find rows by browser, address and expiry.
ALTER TABLE pending_authorizations ADD COLUMN client_address TEXT NOT NULL DEFAULT '';
CREATE INDEX pending_authorizations_browser ON pending_authorizations(browser_binding_hash, created_at);
CREATE INDEX pending_authorizations_address ON pending_authorizations(client_address, expires_at);
CREATE INDEX pending_authorizations_expiry ON pending_authorizations(expires_at);
CREATE INDEX upstream_attempts_pending ON upstream_attempts(pending_id, created_at);
CREATE INDEX upstream_attempts_expiry ON upstream_attempts(expires_at);
