//! A booking as an iCalendar (RFC 5545) event, for `booking ics` and the confirmation
//! e-mails, so that the window lands in everyone's calendar.

use chrono::{DateTime, Utc};

use crate::store::{Booking, BookingState};

/// The booking as a VCALENDAR with one VEVENT. A cancelled booking is sent with
/// `METHOD:CANCEL` and `STATUS:CANCELLED` so calendars remove it.
pub fn booking_ics(booking: &Booking, now: DateTime<Utc>) -> String {
    let cancelled = booking.state == BookingState::Cancelled;
    let summary = format!(
        "{} on {} as {} ({}): {}",
        booking.vendor,
        booking.target,
        booking.account,
        booking.label(),
        crate::plan::title(&booking.plan)
    );
    let lines = [
        "BEGIN:VCALENDAR".to_string(),
        "VERSION:2.0".to_string(),
        "PRODID:-//chaperone//bookings//EN".to_string(),
        format!("METHOD:{}", if cancelled { "CANCEL" } else { "PUBLISH" }),
        "BEGIN:VEVENT".to_string(),
        format!("UID:booking-{}@chaperone", booking.id),
        format!("DTSTAMP:{}", stamp(now)),
        format!("DTSTART:{}", stamp(booking.start)),
        format!("DTEND:{}", stamp(booking.end)),
        format!("SUMMARY:{}", escape(&summary)),
        format!("DESCRIPTION:{}", escape(&booking.plan)),
        format!("STATUS:{}", if cancelled { "CANCELLED" } else { "CONFIRMED" }),
        format!("SEQUENCE:{}", u8::from(cancelled)),
        "END:VEVENT".to_string(),
        "END:VCALENDAR".to_string(),
    ];
    lines.iter().map(|l| fold(l)).collect()
}

fn stamp(at: DateTime<Utc>) -> String {
    at.format("%Y%m%dT%H%M%SZ").to_string()
}

/// TEXT escaping of RFC 5545 §3.3.11.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            ';' => out.push_str("\\;"),
            ',' => out.push_str("\\,"),
            '\n' => out.push_str("\\n"),
            '\r' => {}
            c => out.push(c),
        }
    }
    out
}

/// Folds a content line at 75 octets (never inside a UTF-8 sequence) and ends it in CRLF.
fn fold(line: &str) -> String {
    let mut out = String::with_capacity(line.len() + 8);
    let mut width = 0;
    for c in line.chars() {
        if width + c.len_utf8() > 75 {
            out.push_str("\r\n ");
            width = 1;
        }
        out.push(c);
        width += c.len_utf8();
    }
    out.push_str("\r\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_escaped_folded_and_crlf() {
        assert_eq!(escape("a;b,c\\d\ne"), "a\\;b\\,c\\\\d\\ne");
        let long = format!("DESCRIPTION:{}", "ä".repeat(60));
        let folded = fold(&long);
        assert!(folded.split("\r\n").all(|l| l.len() <= 75), "{folded}");
        assert_eq!(folded.replace("\r\n ", ""), format!("{long}\r\n"));
    }
}
