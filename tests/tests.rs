//! Integration tests: the real chaperone binary between the real OpenSSH client and a
//! real sshd, on loopback. `scripts/test` installs what they need.

// Test helpers fail loudly by design.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

mod bookings;
mod channels;
mod cli;
mod evidence;
mod exact_bytes;
mod fuzzing;
mod hostile;
mod multiplex;
mod readers;
mod recording;
mod redteam;
mod refusals;
mod relay;
mod supervision;
