-- The console's user page reads one person's audit trail, newest first: by user id (and by
-- username for events that carry none, through audit_events_user).
CREATE INDEX audit_events_user_id ON audit_events(user_id, id);
