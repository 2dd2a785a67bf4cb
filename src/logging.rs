//! How log fields are written in the text format: as tracing-subscriber's default `key=value`
//! list, but with line breaks and other control characters escaped (`\n`, `\u{1b}`), so no value
//! — whatever an upstream, a browser or a username put in it — can end the line and start one
//! that reads like hubauth's own. (The JSON format escapes them by construction.) Values from
//! upstreams are also made printable where they enter (`connectors::untrusted`); this is the
//! net under every other field.

use std::fmt;

use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::format::{DefaultFields, Writer};
use tracing_subscriber::fmt::FormatFields;

/// Field formatting for `tracing_subscriber::fmt().fmt_fields(…)`.
#[derive(Default)]
pub struct LineSafeFields(DefaultFields);

impl<'writer> FormatFields<'writer> for LineSafeFields {
    fn format_fields<R: RecordFields>(&self, writer: Writer<'writer>, fields: R) -> fmt::Result {
        let mut plain = String::new();
        self.0.format_fields(Writer::new(&mut plain), fields)?;
        write_escaped(writer, &plain)
    }
}

fn write_escaped(mut writer: Writer<'_>, text: &str) -> fmt::Result {
    for c in text.chars() {
        if c.is_control() {
            write!(writer, "{}", c.escape_default())?;
        } else {
            writer.write_char(c)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::LineSafeFields;

    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Sink {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().write(buf)
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_line_break_in_any_field_stays_on_its_line() {
        let sink = Sink::default();
        let writer = sink.clone();
        let subscriber = tracing_subscriber::fmt()
            .fmt_fields(LineSafeFields::default())
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish();
        let forged = "ada\n2026-12-01T22:00:00.000000Z  INFO hubauth::web::login: user logged in user=admin";
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!(user = %forged, reason = ?"tab\there", "user logged in");
            tracing::info!("message with {}", forged);
        });
        let logs = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
        assert_eq!(logs.lines().count(), 2, "{logs}");
        assert!(logs.contains(r"user=ada\n2026-12-01T22:00:00"), "{logs}");
        assert!(logs.contains(r#"reason="tab\there""#), "{logs}");
        assert!(logs.lines().all(|l| !l.starts_with("2026-12-01T22:00:00")), "{logs}");
    }
}
