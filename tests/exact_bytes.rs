//! The record is binary-safe: every byte a vendor uploads or downloads, on stdin, stdout
//! and stderr, comes back exactly from the recording (`recordings export --raw-…`), which
//! players still read; an altered recording gives none of its bytes.

use std::process::{Command, Stdio};

use crate::common::*;

/// 20 MB, the size the issue asks to prove exact.
const BLOB: usize = 20 * 1024 * 1024;

/// `recordings export ID --raw-… FILE` locally; returns the file's SHA-256.
fn raw_export_sha(w: &World, id: &str, flag: &str, name: &str) -> String {
    let file = w.path(name);
    let out = w.bastion.run(&["recordings", "export", id, flag, file.to_str().unwrap()]);
    assert!(out.status.success(), "export {flag} failed: {}", stderr(&out));
    assert!(stderr(&out).contains("wrote"), "{}", stderr(&out));
    sha256_file(&file)
}

#[test]
fn a_random_20_mb_upload_and_download_come_back_exactly_from_the_recording() {
    let w = World::new();
    let blob = w.path("blob.bin");
    random_file(&blob, BLOB, 16);
    let expected = sha256_file(&blob);

    // Upload: `ssh acme:erp01@bastion 'cat > f' < blob`.
    let uploaded = w.path("uploaded.bin");
    let out = w
        .vendor
        .ssh(&w.bastion, "acme:erp01")
        .arg(format!("cat > {}", uploaded.display()))
        .stdin(std::fs::File::open(&blob).unwrap())
        .output()
        .unwrap();
    assert!(out.status.success(), "upload failed: {}", stderr(&out));
    assert_eq!(sha256_file(&uploaded), expected, "the target's file is not the blob");
    let upload = w.last_session();
    w.ended_session_json(&upload);
    assert_eq!(raw_export_sha(&w, &upload, "--raw-input", "upload.in"), expected, "--raw-input is not the blob");
    assert_eq!(std::fs::metadata(w.path("upload.in")).unwrap().len(), BLOB as u64);
    let out = w.bastion.run(&["recordings", "export", &upload, "--raw-output", "-"]);
    assert!(out.status.success() && out.stdout.is_empty(), "`cat > f` printed nothing: {}", stderr(&out));

    // Download: `cat f` of random bytes put on the target.
    let downloaded = w.path("downloaded.bin");
    let out = w
        .vendor
        .ssh(&w.bastion, "acme:erp01")
        .arg(format!("cat {}", blob.display()))
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&downloaded).unwrap())
        .output()
        .unwrap();
    assert!(out.status.success(), "download failed: {}", stderr(&out));
    assert_eq!(sha256_file(&downloaded), expected, "the download is not the blob");
    let download = w.last_session();
    assert_ne!(download, upload);
    w.ended_session_json(&download);
    assert_eq!(raw_export_sha(&w, &download, "--raw-output", "download.out"), expected, "--raw-output is not the blob");

    // `recordings cat` into a file writes the output byte for byte, not as text.
    let cat = w.path("download.cat");
    let out = w
        .bastion
        .command()
        .args(["recordings", "cat", &download])
        .stdout(std::fs::File::create(&cat).unwrap())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(sha256_file(&cat), expected, "recordings cat > file is not the blob");

    // A technician gets the same bytes over ssh, on standard output.
    let over_ssh = w.path("over-ssh.out");
    let out = w
        .tech
        .ssh(&w.bastion, "alice")
        .arg(format!("recordings export {download} --raw-output -"))
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&over_ssh).unwrap())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(sha256_file(&over_ssh), expected, "--raw-output over ssh is not the blob");
    let out = w.console(&format!("recordings export {download} --raw-output /tmp/x"));
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("over ssh, export to standard output: --raw-output - > FILE"), "{}", stderr(&out));
}

#[test]
fn stdout_and_stderr_of_an_exec_channel_come_back_apart_and_exact() {
    let w = World::new();
    let (out_blob, err_blob) = (w.path("out.bin"), w.path("err.bin"));
    random_file(&out_blob, 2 * 1024 * 1024, 3);
    random_file(&err_blob, 1024 * 1024, 5);
    // Both at once, so that their packets interleave, then a UTF-8 line on each.
    let command = format!(
        "cat {} & cat {} >&2; wait; printf 'größe \\342\\202'; printf '\\254 ok' >&2",
        out_blob.display(),
        err_blob.display()
    );
    let (got_out, got_err) = (w.path("got.out"), w.path("got.err"));
    let out = w
        .vendor
        .ssh(&w.bastion, "acme:erp01")
        .arg(&command)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&got_out).unwrap())
        .stderr(std::fs::File::create(&got_err).unwrap())
        .output()
        .unwrap();
    assert!(out.status.success());
    let id = w.last_session();
    w.ended_session_json(&id);
    let mut expected_out = std::fs::read(&out_blob).unwrap();
    // The euro sign split between the streams: each keeps its half.
    expected_out.extend_from_slice(b"gr\xc3\xb6\xc3\x9fe \xe2\x82");
    let mut expected_err = std::fs::read(&err_blob).unwrap();
    expected_err.extend_from_slice(b"\xac ok");
    assert_eq!(std::fs::read(&got_out).unwrap(), expected_out, "the vendor's stdout");

    let exported = |flag: &str| {
        let out = w.bastion.run(&["recordings", "export", &id, flag, "-"]);
        assert!(out.status.success(), "{}", stderr(&out));
        out.stdout
    };
    assert!(exported("--raw-output") == expected_out, "--raw-output is not the command's stdout");
    assert!(exported("--raw-stderr") == expected_err, "--raw-stderr is not the command's stderr");
    assert!(exported("--raw-input").is_empty());

    // Players still read it: asciinema cat of the v2 export shows the text, U+FFFD for
    // the bytes that are not UTF-8.
    let v2 = w.path("exec.v2.cast");
    w.bastion.ok(&["recordings", "export", &id, "--format", "v2", "-o", v2.to_str().unwrap()]);
    let cat = Command::new("script")
        .args(["-qec", &format!("asciinema cat {} | wc -c", v2.display()), "/dev/null"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(cat.status.success(), "asciinema cat failed: {} {}", stdout(&cat), stderr(&cat));
    let shown: u64 = stdout(&cat).trim().parse().unwrap_or_else(|_| panic!("{}", stdout(&cat)));
    assert!(shown > 3 * 1024 * 1024, "asciinema cat showed {shown} bytes");
    // And our own player replays it to the end.
    let out = w.bastion.run(&["replay", &id]);
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn an_altered_recording_gives_none_of_its_bytes() {
    let w = World::new();
    let out = w.exec("printf 'secret \\377 bytes'");
    assert!(out.status.success());
    let id = w.last_session();
    w.ended_session_json(&id);
    let ok = w.bastion.run(&["recordings", "export", &id, "--raw-output", "-"]);
    assert_eq!(ok.stdout, b"secret \xff bytes", "{}", stderr(&ok));

    // One byte of the recording changed: the seal no longer verifies, nothing is written.
    let cast = w.folder(&id).join("session.cast.zst");
    let mut bytes = std::fs::read(&cast).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x01;
    std::fs::write(&cast, bytes).unwrap();
    let dest = w.path("altered.out");
    let out = w.bastion.run(&["recordings", "export", &id, "--raw-output", dest.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("the seal does not verify"), "{}", stderr(&out));
    assert!(!dest.exists() && !w.path("altered.out.partial").exists(), "an altered recording's bytes were written");
    let out = w.bastion.run(&["recordings", "export", &id, "--raw-output", "-"]);
    assert!(!out.status.success() && out.stdout.is_empty(), "{}", stderr(&out));
}

#[test]
fn an_exec_command_that_is_not_utf8_is_recorded_exactly() {
    use base64::Engine as _;
    use std::os::unix::ffi::OsStrExt;
    let w = World::new();
    let command: &[u8] = b"printf 'ran \\377' # \xff\xfe not utf-8";
    let out = w
        .vendor
        .ssh(&w.bastion, "acme:erp01")
        .arg(std::ffi::OsStr::from_bytes(command))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(out.stdout, b"ran \xff");
    let id = w.last_session();
    w.ended_session_json(&id);
    let text = w.recording_text(&id);
    let header: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    assert_eq!(header["command"], "printf 'ran \\377' # \u{fffd}\u{fffd} not utf-8", "{header}");
    let exact =
        base64::engine::general_purpose::STANDARD.decode(header["chaperone_command"].as_str().unwrap()).unwrap();
    assert_eq!(exact, command, "the recorded command is not what the target ran");
}
