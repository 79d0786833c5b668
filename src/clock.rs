//! The clock every rule reads. Production reads the system clock. Debug builds (what the
//! tests run) can be pointed at a file with `CHAPERONE_TEST_CLOCK`: the file holds an
//! RFC 3339 time that was "now" when the file was last written, and time runs on from
//! there; rewriting the file jumps the clock. Release builds do not contain this: a
//! clock that can be moved from outside is a way around every booking window.

use chrono::{DateTime, Utc};

#[derive(Debug, Clone, Default)]
pub struct Clock {
    #[cfg(debug_assertions)]
    file: Option<std::path::PathBuf>,
}

impl Clock {
    /// The system clock, or (debug builds only) the test clock named by the environment.
    pub fn from_env() -> Clock {
        #[cfg(debug_assertions)]
        {
            Clock { file: std::env::var_os("CHAPERONE_TEST_CLOCK").map(std::path::PathBuf::from) }
        }
        #[cfg(not(debug_assertions))]
        {
            Clock {}
        }
    }

    pub fn now(&self) -> DateTime<Utc> {
        #[cfg(debug_assertions)]
        if let Some(file) = &self.file
            && let Some(now) = read_test_clock(file)
        {
            return now;
        }
        Utc::now()
    }
}

#[cfg(debug_assertions)]
fn read_test_clock(file: &std::path::Path) -> Option<DateTime<Utc>> {
    let text = std::fs::read_to_string(file).ok()?;
    let set: DateTime<Utc> = DateTime::parse_from_rfc3339(text.trim()).ok()?.with_timezone(&Utc);
    let written: DateTime<Utc> = std::fs::metadata(file).ok()?.modified().ok()?.into();
    let elapsed = Utc::now().signed_duration_since(written).max(chrono::Duration::zero());
    Some(set + elapsed)
}
