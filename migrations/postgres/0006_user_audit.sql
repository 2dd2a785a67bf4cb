-- hubauth schema for PostgreSQL, version 6: the console's user page reads one person's audit
-- trail, newest first, by user id. Additive (an index), so older releases keep serving.
CREATE INDEX IF NOT EXISTS audit_events_user_id ON audit_events(user_id, id);
