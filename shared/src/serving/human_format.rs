//! The human-readable log format, with a fast path for the call line.
//!
//! Every line reads as tracing-subscriber's default ("full") format writes it:
//! `2026-11-27T00:59:06.681915Z  INFO cohort_shared::call_log: call method=...`.
//! Lines outside a span from the call log ([`crate::call_log`]), one per call,
//! are written here without the general machinery: the timestamp's date and
//! time are formatted once a second per thread, the level and target are
//! copied, and the fields go straight to the line. Profiled under `Check` load,
//! the default formatter spent about 5% of the authorization service's CPU on
//! that one line (the timestamp, ANSI-style wrappers that paint nothing, a
//! visitor per field). Every other line, and every line when colours are on,
//! goes to the default format; `same_lines_as_the_default_format` holds the
//! two to the same bytes.

use std::cell::RefCell;
use std::fmt::{self, Write as _};
use std::time::{SystemTime, UNIX_EPOCH};

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::{self, FormatEvent, FormatFields, Writer};
use tracing_subscriber::fmt::FmtContext;
use tracing_subscriber::registry::LookupSpan;

/// The human format: tracing-subscriber's default, the call line written fast.
#[derive(Debug, Default)]
pub(crate) struct HumanFormat {
    full: format::Format,
}

impl<S, N> FormatEvent<S, N> for HumanFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let metadata = event.metadata();
        if metadata.target() != crate::call_log::TARGET
            || writer.has_ansi_escapes()
            || ctx.event_scope().is_some()
        {
            return self.full.format_event(ctx, writer, event);
        }
        write_timestamp(&mut writer)?;
        writer.write_str(match *metadata.level() {
            Level::TRACE => " TRACE ",
            Level::DEBUG => " DEBUG ",
            Level::INFO => "  INFO ",
            Level::WARN => "  WARN ",
            Level::ERROR => " ERROR ",
        })?;
        writer.write_str(metadata.target())?;
        writer.write_str(": ")?;
        let mut fields = Fields {
            writer: &mut writer,
            first: true,
            result: Ok(()),
        };
        event.record(&mut fields);
        fields.result?;
        writer.write_char('\n')
    }
}

thread_local! {
    /// The second last formatted on this thread, and its text up to the seconds.
    static SECOND: RefCell<(u64, String)> = const { RefCell::new((u64::MAX, String::new())) };
}

/// `2026-11-27T00:59:06.681915Z`, as the default format writes it (UTC, to the
/// microsecond).
fn write_timestamp(writer: &mut Writer<'_>) -> fmt::Result {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let second = now.as_secs();
    SECOND.with_borrow_mut(|(cached, text)| {
        if *cached != second {
            let at = chrono::DateTime::from_timestamp(second as i64, 0).unwrap_or_default();
            text.clear();
            write!(text, "{}", at.format("%Y-%m-%dT%H:%M:%S"))?;
            *cached = second;
        }
        writer.write_str(text)
    })?;
    let micros = now.subsec_micros();
    let mut digits = [b'.', b'0', b'0', b'0', b'0', b'0', b'0', b'Z'];
    let mut rest = micros;
    for digit in digits[1..7].iter_mut().rev() {
        *digit = b'0' + (rest % 10) as u8;
        rest /= 10;
    }
    writer.write_str(std::str::from_utf8(&digits).expect("ASCII digits"))
}

/// The fields as the default format's visitor writes them: the message first as
/// it is (terminal escapes escaped), then ` name=value` with the value's `Debug`.
struct Fields<'w, 'a> {
    writer: &'w mut Writer<'a>,
    first: bool,
    result: fmt::Result,
}

impl Visit for Fields<'_, '_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.record_debug(field, &format_args!("{value}"))
        } else {
            self.record_debug(field, &value)
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if self.result.is_err() {
            return;
        }
        if !std::mem::take(&mut self.first) {
            self.result = self.writer.write_char(' ');
        }
        let name = field.name();
        self.result = self.result.and_then(|()| match name {
            "message" => write!(Escaping(&mut *self.writer), "{value:?}"),
            name => {
                let name = name.strip_prefix("r#").unwrap_or(name);
                write!(self.writer, "{name}={value:?}")
            }
        });
    }
}

/// Writes through, escaping the characters a terminal would act on, as the
/// default format does for messages.
struct Escaping<'w, 'a>(&'w mut Writer<'a>);

impl fmt::Write for Escaping<'_, '_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let plain = |c: char| {
            !matches!(
                c,
                '\x1b' | '\x07' | '\x08' | '\x0c' | '\x7f' | '\u{80}'..='\u{9f}'
            )
        };
        if s.chars().all(plain) {
            return self.0.write_str(s);
        }
        for c in s.chars() {
            match c {
                '\x1b' => self.0.write_str("\\x1b")?,
                '\x07' => self.0.write_str("\\x07")?,
                '\x08' => self.0.write_str("\\x08")?,
                '\x0c' => self.0.write_str("\\x0c")?,
                '\x7f' => self.0.write_str("\\x7f")?,
                '\u{80}'..='\u{9f}' => write!(self.0, "\\u{{{:x}}}", c as u32)?,
                c => self.0.write_char(c)?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
        type Writer = Captured;
        fn make_writer(&'a self) -> Self::Writer {
            self.clone()
        }
    }

    struct Millis(f64);
    impl fmt::Display for Millis {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "{:.3}", self.0)
        }
    }

    /// The call lines, and a line of another target, as one formatter writes them.
    fn lines(fast: bool) -> Vec<String> {
        let captured = Captured::default();
        let builder = tracing_subscriber::fmt()
            .with_writer(captured.clone())
            .with_ansi(false)
            .with_max_level(Level::DEBUG);
        let emit = || {
            let (method, request_id) = ("/cohort.authz.v1.AuthzService/Check", "f93f3a54");
            let elapsed_ms = tracing::field::display(Millis(0.0333));
            tracing::info!(target: "cohort_shared::call_log", %method, %request_id, tenant = %"", status = ?tonic::Code::Ok, elapsed_ms, "call");
            tracing::warn!(target: "cohort_shared::call_log", %method, error = %"broken \u{1b}[31m pipe", elapsed_ms, "call failed in transport");
            tracing::debug!(target: "cohort_shared::call_log", r#type = "health", count = 3_u64, ok = true, "call \u{1b}[2J\u{85}");
            tracing::error!(target: "elsewhere", answer = 42, "not a call line");
            let span = tracing::info_span!("grpc", %method);
            let _entered = span.enter();
            tracing::info!(target: "cohort_shared::call_log", %request_id, "call in a span");
        };
        if fast {
            tracing::subscriber::with_default(
                builder.event_format(HumanFormat::default()).finish(),
                emit,
            );
        } else {
            tracing::subscriber::with_default(builder.finish(), emit);
        }
        let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        text.lines().map(str::to_owned).collect()
    }

    #[test]
    fn same_lines_as_the_default_format() {
        let (fast, default) = (lines(true), lines(false));
        assert_eq!(fast.len(), 5);
        assert_eq!(fast.len(), default.len());
        for (fast, default) in fast.iter().zip(&default) {
            // The timestamps differ by when they were taken; their form must not.
            let (fast_time, fast_rest) = fast.split_at(27);
            let (default_time, default_rest) = default.split_at(27);
            assert_eq!(fast_rest, default_rest);
            let shape = |t: &str| {
                t.chars()
                    .map(|c| if c.is_ascii_digit() { '9' } else { c })
                    .collect::<String>()
            };
            assert_eq!(shape(fast_time), "9999-99-99T99:99:99.999999Z");
            assert_eq!(shape(fast_time), shape(default_time));
        }
        assert!(fast[0].ends_with(
            "  INFO cohort_shared::call_log: call method=/cohort.authz.v1.AuthzService/Check request_id=f93f3a54 tenant= status=Ok elapsed_ms=0.033"
        ), "{}", fast[0]);
        assert!(
            fast[2].contains("call \\x1b[2J\\u{85} type=\"health\" count=3 ok=true"),
            "{}",
            fast[2]
        );
    }
}
