//! Recognising file transfer that does not come through the sftp subsystem: the server
//! side of a transfer protocol started as a command (`sftp-server`, `scp -t/-f`,
//! `rsync --server`, git's and other repositories' and sync tools' stdio servers), seen
//! through the wrappers a client may put in front (`exec`,
//! `env VAR=x`, `sh -c '…'`, `nice`, `sudo -u x`, quoting), and, since a command line can
//! always be disguised, the first bytes such a protocol's client sends. Pure: the gate
//! and the relay both ask here.

/// How deep `sh -c '…'` / `eval` / `env -S` may nest before the command is taken for a
/// transfer: nobody nests honest commands that deep, and the walk stays bounded.
const MAX_NESTING: usize = 8;

/// The transfer protocol a command line or a stream's opening belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transfer {
    Sftp,
    Scp,
    Rsync,
    /// `git push`/`clone`/`archive` over ssh (git-receive-pack, git-upload-pack…).
    Git,
    /// Other repositories' and sync tools' stdio servers (svnserve -t, hg serve --stdio,
    /// borg serve, unison -server, rdiff-backup --server).
    Sync,
}

impl Transfer {
    pub fn name(self) -> &'static str {
        match self {
            Transfer::Sftp => "sftp",
            Transfer::Scp => "scp",
            Transfer::Rsync => "rsync",
            Transfer::Git => "git",
            Transfer::Sync => "repository or sync server",
        }
    }
}

/// True when `command` starts the server side of a file transfer (see [`file_transfer`]).
pub fn is_file_transfer(command: &[u8]) -> bool {
    file_transfer(command).is_some()
}

/// The transfer protocol whose server side `command` starts, if any: `sftp-server` (by
/// any path) or `internal-sftp`, `scp` with `-t` or `-f`, `rsync` with `--server`, in any
/// of the simple commands of the line (`cd /tmp && scp -t .`), also behind wrappers.
pub fn file_transfer(command: &[u8]) -> Option<Transfer> {
    line(&String::from_utf8_lossy(command), 0)
}

fn line(text: &str, depth: usize) -> Option<Transfer> {
    if depth > MAX_NESTING {
        // Nested deeper than anyone honest would: refused rather than walked further.
        return Some(Transfer::Sftp);
    }
    split_commands(text).iter().find_map(|words| simple(words, depth))
}

/// One simple command's words: wrappers are stepped over, shells and `eval` looked into.
fn simple(words: &[String], depth: usize) -> Option<Transfer> {
    let mut rest = words;
    loop {
        let (first, args) = rest.split_first()?;
        // `VAR=x cmd`
        if is_assignment(first) {
            rest = args;
            continue;
        }
        let program = first.rsplit('/').next().unwrap_or(first);
        match program {
            "sftp-server" | "internal-sftp" => return Some(Transfer::Sftp),
            "scp" => {
                let server = args
                    .iter()
                    .take_while(|a| a.as_str() != "--")
                    .any(|a| is_short_cluster(a) && (a.contains('t') || a.contains('f')));
                return server.then_some(Transfer::Scp);
            }
            "rsync" => return args.iter().any(|a| a == "--server").then_some(Transfer::Rsync),
            "git-upload-pack" | "git-receive-pack" | "git-upload-archive" => return Some(Transfer::Git),
            // `git upload-pack …`, `git -C dir receive-pack …`
            "git" => {
                let mut rest = args.iter();
                let subcommand = loop {
                    match rest.next().map(String::as_str) {
                        // Global options with a value in the next word.
                        Some("-C" | "-c" | "--git-dir" | "--work-tree" | "--namespace") => {
                            rest.next();
                        }
                        Some(option) if option.starts_with('-') => {}
                        other => break other,
                    }
                };
                let server = matches!(subcommand, Some("upload-pack" | "receive-pack" | "upload-archive"));
                return server.then_some(Transfer::Git);
            }
            "svnserve" => return args.iter().any(|a| a == "-t" || a == "--tunnel").then_some(Transfer::Sync),
            "hg" => return args.iter().any(|a| a == "--stdio").then_some(Transfer::Sync),
            "borg" | "borgbackup" => return args.iter().any(|a| a == "serve").then_some(Transfer::Sync),
            "unison" => return args.iter().any(|a| a == "-server").then_some(Transfer::Sync),
            "rdiff-backup" => {
                return args.iter().any(|a| a == "--server" || a == "server").then_some(Transfer::Sync);
            }
            // `busybox sh -c …`, `busybox scp -t …`: the applet is the program.
            "busybox" => rest = args,
            "sh" | "bash" | "dash" | "ash" | "ksh" | "mksh" | "zsh" => return shell(args, depth),
            "eval" => return line(&args.join(" "), depth + 1),
            "env" => match skip_env_options(args, depth) {
                Ok(command) => rest = command.unwrap_or(&[]),
                Err(found) => return Some(found),
            },
            // `su -c CMD user`, `runuser -c CMD`: the command is the option's value.
            "su" | "runuser" if args.iter().any(|a| a == "-c" || a == "--command") => {
                let at = args.iter().position(|a| a == "-c" || a == "--command")?;
                return line(args.get(at + 1)?, depth + 1);
            }
            "exec" | "command" | "builtin" | "nohup" | "setsid" | "time" | "nice" | "ionice" | "chrt" | "taskset"
            | "stdbuf" | "sudo" | "doas" | "timeout" | "unbuffer" | "xargs" | "chroot" | "runuser" | "su" => {
                rest = skip_wrapper(program, args);
            }
            _ => return None,
        }
    }
}

/// `sh [options] -c STRING …`: the string is a command line of its own.
fn shell(args: &[String], depth: usize) -> Option<Transfer> {
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        if arg == "--" || !arg.starts_with('-') && !arg.starts_with('+') {
            // A script file or stdin: what it runs cannot be seen here (the relay sniffs).
            return None;
        }
        if arg.starts_with('-') && !arg.starts_with("--") && arg.contains('c') {
            return line(it.next()?, depth + 1);
        }
        // `-o option`: its value is not a command.
        if arg == "-o" || arg == "+o" {
            it.next();
        }
    }
    None
}

/// `env`'s options and assignments; `-S STRING` splits a command line of its own (returned
/// as the transfer it starts, as `Err`).
fn skip_env_options(args: &[String], depth: usize) -> Result<Option<&[String]>, Transfer> {
    let mut i = 0;
    while let Some(arg) = args.get(i) {
        if arg == "-S" || arg == "--split-string" {
            let rest = args.get(i + 1..).unwrap_or(&[]).join(" ");
            return match line(&rest, depth + 1) {
                Some(found) => Err(found),
                None => Ok(None),
            };
        }
        if let Some(split) = arg.strip_prefix("--split-string=").or_else(|| arg.strip_prefix("-S")) {
            let rest = std::iter::once(split.to_string()).chain(args.get(i + 1..).unwrap_or(&[]).iter().cloned());
            return match line(&rest.collect::<Vec<_>>().join(" "), depth + 1) {
                Some(found) => Err(found),
                None => Ok(None),
            };
        }
        if arg == "--" {
            return Ok(args.get(i + 1..));
        }
        if arg == "-u" || arg == "--unset" || arg == "-C" || arg == "--chdir" {
            i += 2;
        } else if arg.starts_with('-') || is_assignment(arg) {
            i += 1;
        } else {
            return Ok(args.get(i..));
        }
    }
    Ok(None)
}

/// The arguments after a wrapper's own options: what it runs.
fn skip_wrapper<'a>(program: &str, args: &'a [String]) -> &'a [String] {
    // Options of each wrapper that take a value as the next word.
    let with_value: &[&str] = match program {
        "exec" => &["-a"],
        "nice" => &["-n", "--adjustment"],
        "ionice" => &["-c", "-n", "-p", "--class", "--classdata"],
        "chrt" => &["-p"],
        "sudo" => &["-u", "-g", "-h", "-p", "-C", "-D", "-r", "-t", "-U", "-T", "--user", "--group", "--host"],
        "doas" => &["-u", "-C"],
        "timeout" => &["-s", "-k", "--signal", "--kill-after"],
        "xargs" => &["-a", "-d", "-E", "-I", "-L", "-n", "-P", "-s"],
        "stdbuf" => &["-i", "-o", "-e"],
        "runuser" | "su" => &["-u", "-g", "-G", "-s", "--user", "--group", "--shell"],
        _ => &[],
    };
    let mut i = 0;
    while let Some(arg) = args.get(i) {
        if arg == "--" {
            i += 1;
            break;
        }
        if !arg.starts_with('-') || arg == "-" {
            break;
        }
        i += if with_value.contains(&arg.as_str()) { 2 } else { 1 };
    }
    let rest = args.get(i..).unwrap_or(&[]);
    // Their positional arguments before the command.
    let positional = match program {
        "timeout" | "chroot" | "taskset" => 1,
        _ => 0,
    };
    rest.get(positional..).unwrap_or(&[])
}

/// `-abc`: a cluster of short options (not `--long`, not a lone `-`).
fn is_short_cluster(word: &str) -> bool {
    word.len() > 1
        && word.starts_with('-')
        && !word.starts_with("--")
        && word[1..].chars().all(|c| c.is_ascii_alphanumeric())
}

fn is_assignment(word: &str) -> bool {
    match word.split_once('=') {
        Some((name, _)) => {
            !name.is_empty()
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                && !name.starts_with(|c: char| c.is_ascii_digit())
        }
        None => false,
    }
}

/// Splits a command line the way a POSIX shell would, far enough to see programs: words
/// (quotes and backslashes removed), simple commands apart at `;`, `&`, `|`, newlines,
/// grouping and substitutions (`$(scp -t .)` is looked into). What a substitution's
/// output or a variable would run cannot be seen here: the relay's sniffing is for that.
fn split_commands(text: &str) -> Vec<Vec<String>> {
    let mut commands = Vec::new();
    let mut words: Vec<String> = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = text.chars().peekable();
    let end_word = |words: &mut Vec<String>, word: &mut String, in_word: &mut bool| {
        if *in_word {
            words.push(std::mem::take(word));
            *in_word = false;
        }
    };
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                in_word = true;
                for q in chars.by_ref() {
                    if q == '\'' {
                        break;
                    }
                    word.push(q);
                }
            }
            '"' => {
                in_word = true;
                while let Some(q) = chars.next() {
                    match q {
                        '"' => break,
                        '\\' => match chars.next() {
                            Some(e @ ('"' | '\\' | '$' | '`')) => word.push(e),
                            Some('\n') => {}
                            Some(e) => {
                                word.push('\\');
                                word.push(e);
                            }
                            None => {}
                        },
                        _ => word.push(q),
                    }
                }
            }
            '\\' => match chars.next() {
                Some('\n') | None => {}
                Some(e) => {
                    in_word = true;
                    word.push(e);
                }
            },
            ';' | '&' | '|' | '\n' | '(' | ')' | '`' | '{' | '}' if !in_word || !matches!(c, '{' | '}') => {
                end_word(&mut words, &mut word, &mut in_word);
                if !words.is_empty() {
                    commands.push(std::mem::take(&mut words));
                }
            }
            c if c.is_whitespace() => end_word(&mut words, &mut word, &mut in_word),
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    end_word(&mut words, &mut word, &mut in_word);
    if !words.is_empty() {
        commands.push(words);
    }
    // Reserved words that start a compound command are not programs.
    for words in &mut commands {
        while words.first().is_some_and(|w| {
            matches!(w.as_str(), "then" | "do" | "else" | "elif" | "if" | "while" | "until" | "!" | "time")
        }) {
            words.remove(0);
        }
    }
    commands
}

/// The first bytes a vendor sends on a channel without a terminal, when they open a
/// transfer protocol that a disguised command started: SFTP's `SSH_FXP_INIT` (uint32
/// length, byte 1, uint32 version 1-6), rsync's protocol version (a little-endian int32 in
/// rsync's range, then its checksum list or file list), or legacy scp's file or directory line (`C0644 12 name`) or its
/// go-ahead byte (a lone NUL, when the client receives). `first` is what arrived first on
/// the channel.
pub fn sniff_transfer(first: &[u8]) -> Option<Transfer> {
    match first {
        [0, 0, len_hi, len_lo, 1, 0, 0, 0, version, ..]
            if (1..=6).contains(version) && u16::from_be_bytes([*len_hi, *len_lo]) >= 5 =>
        {
            Some(Transfer::Sftp)
        }
        [version, 0, 0, 0, ..] if (20..=40).contains(version) => Some(Transfer::Rsync),
        [0] => Some(Transfer::Scp),
        [kind @ (b'C' | b'D'), rest @ ..] if scp_line(*kind, rest) => Some(Transfer::Scp),
        _ => None,
    }
}

/// True when SFTP's init packet appears anywhere in `data` (after a shell's script, in
/// the same chunk).
pub fn contains_sftp_init(data: &[u8]) -> bool {
    data.windows(9).any(|w| sniff_transfer(w) == Some(Transfer::Sftp))
}

/// `C0644 1234 name\n` / `D0755 0 dir\n` after its first byte.
fn scp_line(_kind: u8, rest: &[u8]) -> bool {
    let Some(end) = rest.iter().position(|&b| b == b'\n') else { return false };
    let text = String::from_utf8_lossy(&rest[..end]);
    let mut parts = text.splitn(3, ' ');
    let (Some(mode), Some(size), Some(name)) = (parts.next(), parts.next(), parts.next()) else { return false };
    mode.len() == 4
        && mode.bytes().all(|b| (b'0'..=b'7').contains(&b))
        && !size.is_empty()
        && size.bytes().all(|b| b.is_ascii_digit())
        && !name.is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transfer_commands_are_seen_through_paths_flags_and_wrappers() {
        let yes = [
            ("scp -t /tmp/x", Transfer::Scp),
            ("scp -v -f a", Transfer::Scp),
            ("/usr/bin/scp -pt .", Transfer::Scp),
            ("scp -r -t -- /tmp", Transfer::Scp),
            ("scp -rpt /tmp", Transfer::Scp),
            ("scp -d -t -- x", Transfer::Scp),
            ("  \tscp\t-t  /tmp", Transfer::Scp),
            ("'scp' -t x", Transfer::Scp),
            ("\"/usr/bin/scp\" -f x", Transfer::Scp),
            ("s\\cp -t x", Transfer::Scp),
            ("/usr/lib/openssh/sftp-server", Transfer::Sftp),
            ("/usr/lib/openssh/sftp-server -e -l DEBUG3", Transfer::Sftp),
            ("sftp-server", Transfer::Sftp),
            ("/usr/libexec/sftp-server", Transfer::Sftp),
            ("internal-sftp", Transfer::Sftp),
            ("rsync --server -vlogDtpre.iLsfxCIvu . /tmp/x", Transfer::Rsync),
            ("rsync -v --server --sender . x", Transfer::Rsync),
            ("/usr/bin/rsync --server --daemon .", Transfer::Rsync),
            ("exec /usr/lib/openssh/sftp-server", Transfer::Sftp),
            ("exec -a x scp -t .", Transfer::Scp),
            ("env LC_ALL=C scp -t .", Transfer::Scp),
            ("env -i PATH=/bin scp -t .", Transfer::Scp),
            ("env -u HOME -- scp -t .", Transfer::Scp),
            ("env -S 'scp -t .'", Transfer::Scp),
            ("FOO=1 BAR=2 scp -t .", Transfer::Scp),
            ("sh -c 'exec /usr/lib/openssh/sftp-server'", Transfer::Sftp),
            ("/bin/sh -c \"scp -t /tmp\"", Transfer::Scp),
            ("bash -lc 'rsync --server . x'", Transfer::Rsync),
            ("sh -e -c 'cd /tmp && scp -t .'", Transfer::Scp),
            ("busybox sh -c 'scp -t .'", Transfer::Scp),
            ("sh -c \"sh -c 'sftp-server'\"", Transfer::Sftp),
            ("nice scp -t .", Transfer::Scp),
            ("nice -n 10 scp -t .", Transfer::Scp),
            ("nohup scp -t .", Transfer::Scp),
            ("sudo -u root scp -t /root", Transfer::Scp),
            ("sudo -E -- /usr/lib/openssh/sftp-server", Transfer::Sftp),
            ("timeout 10 scp -t .", Transfer::Scp),
            ("su -c 'scp -t .' root", Transfer::Scp),
            ("eval scp -t .", Transfer::Scp),
            ("cd /tmp; scp -t .", Transfer::Scp),
            ("true && rsync --server . x", Transfer::Rsync),
            ("echo hi | scp -t .", Transfer::Scp),
            ("(scp -t .)", Transfer::Scp),
            ("if true; then scp -t .; fi", Transfer::Scp),
            ("command exec nice sudo -u x env A=b sh -c 'exec scp -t .'", Transfer::Scp),
            ("git-upload-pack '/srv/repo.git'", Transfer::Git),
            ("git-receive-pack '/srv/repo.git'", Transfer::Git),
            ("/usr/lib/git-core/git-upload-archive 'repo'", Transfer::Git),
            ("git -C /srv upload-pack repo", Transfer::Git),
            ("git -c a=b --bare receive-pack repo", Transfer::Git),
            ("svnserve -t", Transfer::Sync),
            ("hg -R repo serve --stdio", Transfer::Sync),
            ("borg serve --restrict-to-path /b", Transfer::Sync),
            ("unison -server", Transfer::Sync),
            ("rdiff-backup --server", Transfer::Sync),
        ];
        for (command, kind) in yes {
            assert_eq!(file_transfer(command.as_bytes()), Some(kind), "{command}");
        }
        let no = [
            "ls -t",
            "echo scp -t",
            "scp",
            "scpx -t",
            "scp -v a b",
            "scp -P 22 file host:/tmp",
            "echo sftp-server",
            "man rsync",
            "rsync -av src/ dst/",
            "rsync -av --server-side x y",
            "sh script.sh",
            "sh -x script.sh",
            "bash",
            "env",
            "env LANG=C",
            "nice",
            "sudo -u root",
            "grep -f patterns file",
            "cat /usr/lib/openssh/sftp-server.txt",
            "tar cf - /etc",
            "git status",
            "git grep receive-pack",
            "git log --oneline",
            "hg log",
            "borg list /b",
            "sh -c 'echo scp -t .'",
            "",
            "   ",
        ];
        for command in no {
            assert_eq!(file_transfer(command.as_bytes()), None, "{command}");
        }
    }

    #[test]
    fn nesting_beyond_the_bound_counts_as_a_transfer() {
        let mut command = "true".to_string();
        for _ in 0..20 {
            command = format!("eval {command}");
        }
        assert!(is_file_transfer(command.as_bytes()));
        assert!(!is_file_transfer(b"eval eval eval true"));
    }

    #[test]
    fn transfer_openings_are_recognised_and_text_is_not() {
        let yes: [(&[u8], Transfer); 8] = [
            (&[0, 0, 0, 5, 1, 0, 0, 0, 3], Transfer::Sftp),
            (&[0, 0, 0, 25, 1, 0, 0, 0, 3, 0, 0, 0, 4], Transfer::Sftp),
            (&[0, 0, 0, 5, 1, 0, 0, 0, 6], Transfer::Sftp),
            (&[31, 0, 0, 0], Transfer::Rsync),
            (b"\x20\0\0\0\x1exxh128 xxh3 xxh64 md5 md4 sha1", Transfer::Rsync),
            (&[0], Transfer::Scp),
            (b"C0644 12 notes.txt\n", Transfer::Scp),
            (b"D0755 0 dir\n", Transfer::Scp),
        ];
        for (bytes, kind) in yes {
            assert_eq!(sniff_transfer(bytes), Some(kind), "{bytes:?}");
        }
        let no: [&[u8]; 10] = [
            &[31, 0, 0],
            b"ls -l\n",
            b"echo hi\n",
            b"",
            &[0, 0, 0, 5, 2, 0, 0, 0, 3],
            &[0, 0, 0, 5, 1, 0, 0, 0, 9],
            &[0, 0],
            b"C0644 notes\n",
            b"Cat file\n",
            b"D0755 0 dir",
        ];
        for bytes in no {
            assert_eq!(sniff_transfer(bytes), None, "{bytes:?}");
        }
        assert!(contains_sftp_init(b"exec /usr/lib/openssh/sftp-server\n\0\0\0\x05\x01\0\0\0\x03"));
        assert!(!contains_sftp_init(b"exec /usr/lib/openssh/sftp-server\n\0\0\0\x05\x02\0\0\0\x03"));
        assert!(!contains_sftp_init(b"\0\0\0\x05\x01\0\0\0"));
    }
}
