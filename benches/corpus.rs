//! A realistic corpus of terminal output, generated (deterministically) by the benches:
//! `ls -l` listings, syslog lines, compiler output with ANSI colours, `top`-style redraws
//! with cursor movement, and some non-ASCII text, cut into chunks of SSH-packet sizes.

/// A small xorshift generator: deterministic, no dependency.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len() as u64) as usize]
    }
}

const WORDS: &[&str] = &[
    "invoice",
    "batch",
    "processed",
    "connection",
    "accepted",
    "closed",
    "timeout",
    "user",
    "session",
    "opened",
    "records",
    "warning",
    "deprecated",
    "kernel",
    "postgres",
    "checkpoint",
    "vacuum",
    "Größe",
    "Übertrag",
    "état",
];

/// `bytes` of terminal output.
pub fn terminal_output(bytes: usize, seed: u64) -> Vec<u8> {
    let mut rng = Rng::new(seed);
    let mut out = String::with_capacity(bytes + 4096);
    while out.len() < bytes {
        match rng.below(10) {
            0..=3 => {
                let pid = 1000 + rng.below(9000);
                let words: Vec<&str> = (0..3 + rng.below(10)).map(|_| rng.pick(WORDS)).collect();
                out.push_str(&format!(
                    "Dec  3 10:{:02}:{:02} erp01 app[{pid}]: {} id={}\n",
                    rng.below(60),
                    rng.below(60),
                    words.join(" "),
                    rng.next_u64() % 1_000_000_000
                ));
            }
            4..=5 => {
                for _ in 0..1 + rng.below(20) {
                    out.push_str(&format!(
                        "-rw-r--r-- 1 erp erp {:>9} Dec  3 {:02}:{:02} {}_{}.dat\n",
                        rng.below(100_000_000),
                        rng.below(24),
                        rng.below(60),
                        rng.pick(WORDS),
                        rng.below(1000)
                    ));
                }
            }
            6..=7 => out.push_str(&format!(
                "\x1b[1m\x1b[33mwarning\x1b[0m\x1b[1m: unused variable: `{}`\x1b[0m\n  \x1b[1m\x1b[34m-->\x1b[0m src/{}.rs:{}:{}\n",
                rng.pick(WORDS),
                rng.pick(WORDS),
                rng.below(900),
                rng.below(80)
            )),
            _ => {
                out.push_str("\x1b[H\x1b[2J");
                out.push_str(&format!("top - 10:{:02}:{:02} up 12 days, load average: 0.{}\n", rng.below(60), rng.below(60), rng.below(99)));
                for row in 0..20 {
                    out.push_str(&format!(
                        "\x1b[{};1H{:>6} erp  20 0 {:>8} {:>7} S {:>4.1} {:>4.1} {}\n",
                        row + 3,
                        rng.below(99999),
                        rng.below(9_999_999),
                        rng.below(999_999),
                        rng.below(1000) as f64 / 10.0,
                        rng.below(1000) as f64 / 10.0,
                        rng.pick(WORDS)
                    ));
                }
            }
        }
    }
    let mut bytes_out = out.into_bytes();
    bytes_out.truncate(bytes);
    bytes_out
}

/// Cuts `data` into chunks of 1 B to 32 KiB, as SSH packets arrive (mostly large ones
/// during a stream, with small ones in between).
pub fn chunks(data: &[u8], seed: u64) -> Vec<bytes::Bytes> {
    let mut rng = Rng::new(seed);
    let mut out = Vec::new();
    let mut at = 0;
    while at < data.len() {
        let size = if rng.below(4) == 0 { 1 + rng.below(512) } else { 32 * 1024 } as usize;
        let end = (at + size).min(data.len());
        out.push(bytes::Bytes::copy_from_slice(&data[at..end]));
        at = end;
    }
    out
}
