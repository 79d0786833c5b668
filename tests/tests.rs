//! Integration tests: the real chaperone binary between the real OpenSSH client and a
//! real sshd, on loopback. `scripts/test` installs what they need.

// Test helpers fail loudly by design.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

mod bookings;
mod cli;
mod evidence;
mod fuzzing;
mod recording;
mod refusals;
mod relay;
mod supervision;
