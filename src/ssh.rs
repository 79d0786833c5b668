//! SSH settings both sides share (the gate facing vendors, upstream facing targets).
//!
//! Ciphers: AES-GCM costs a fraction of ChaCha20-Poly1305 where the CPU has AES and
//! carry-less multiply instructions (almost every server CPU), and the relay encrypts
//! every byte twice. In SSH the client's preference wins, and OpenSSH clients prefer
//! ChaCha20, then AES-CTR (with a separate MAC), then AES-GCM; so on such CPUs the gate
//! offers AES-GCM only (every OpenSSH since 6.2 and PuTTY since 0.76 have it), and
//! upstream asks for AES-GCM first. Without those instructions the defaults stay.

use std::borrow::Cow;

use russh::{Preferred, cipher};

/// What the gate offers vendors' clients on CPUs with hardware AES.
const GATE_CIPHERS: &[cipher::Name] = &[cipher::AES_128_GCM, cipher::AES_256_GCM];

/// What upstream asks targets for, in order, on CPUs with hardware AES.
const UPSTREAM_CIPHERS: &[cipher::Name] =
    &[cipher::AES_128_GCM, cipher::AES_256_GCM, cipher::CHACHA20_POLY1305, cipher::AES_128_CTR, cipher::AES_256_CTR];

/// The gate's (server side) algorithm preferences.
pub fn gate_preferred() -> Preferred {
    with_ciphers(GATE_CIPHERS)
}

/// Upstream's (client side) algorithm preferences.
pub fn upstream_preferred() -> Preferred {
    with_ciphers(UPSTREAM_CIPHERS)
}

fn with_ciphers(ciphers: &'static [cipher::Name]) -> Preferred {
    if hardware_aes() {
        Preferred { cipher: Cow::Borrowed(ciphers), ..Preferred::default() }
    } else {
        Preferred::default()
    }
}

fn hardware_aes() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("aes") && std::arch::is_x86_feature_detected!("pclmulqdq")
    }
    #[cfg(target_arch = "aarch64")]
    {
        std::arch::is_aarch64_feature_detected!("aes") && std::arch::is_aarch64_feature_detected!("pmull")
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        false
    }
}
