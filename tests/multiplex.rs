//! One vendor connection carrying many commands at once (OpenSSH's ControlMaster): each
//! command's exit status reaches its own client and its own recording.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::common::*;

/// A ControlMaster connection to the bastion (`ssh -M -N -f`): it opens no channel of
/// its own, so the session's ten channels are all the commands'.
struct Master {
    socket: PathBuf,
    options: Vec<String>,
    port: u16,
}

impl Master {
    fn start(w: &World) -> Master {
        let socket = w.path("cm.sock");
        let mut options = w.vendor.options(&w.bastion);
        options.extend(["-o".into(), format!("ControlPath={}", socket.display())]);
        let master = Master { socket, options, port: w.bastion.port };
        let status = master.ssh().args(["-o", "ControlMaster=yes", "-N", "-f"]).status().unwrap();
        assert!(status.success(), "the control master did not start");
        assert!(Path::new(&master.socket).exists(), "no control socket");
        master
    }

    /// `ssh` through the master's socket (or, for `start`, the master itself).
    fn ssh(&self) -> Command {
        let mut cmd = Command::new("ssh");
        cmd.args(&self.options).arg("-p").arg(self.port.to_string()).arg("acme:erp01@127.0.0.1");
        cmd.stdin(Stdio::null());
        cmd
    }

    fn run(&self, command: &str) -> std::process::Child {
        let mut cmd = self.ssh();
        cmd.args(["-o", "ControlMaster=no"]).arg(command).stdout(Stdio::null()).stderr(Stdio::piped());
        cmd.spawn().unwrap()
    }
}

impl Drop for Master {
    fn drop(&mut self) {
        let _ = self.ssh().args(["-O", "exit"]).stderr(Stdio::null()).status();
    }
}

/// Ten `exit N` at once through one master, ten rounds: every client exits with its own N
/// (not 255), and session.json gives every channel its command's status (not null).
#[test]
fn ten_concurrent_commands_through_one_control_master_keep_their_exit_statuses() {
    let w = World::new();
    let master = Master::start(&w);
    for round in 0..10 {
        let children: Vec<_> = (1..=10).map(|n| (n, master.run(&format!("exit {n}")))).collect();
        for (n, child) in children {
            let out = child.wait_with_output().unwrap();
            assert_eq!(out.status.code(), Some(n), "round {round}, `exit {n}`: {}", stderr(&out));
        }
    }
    drop(master);
    let json = w.ended_session_json(&w.last_session());
    let channels = json["channels"].as_array().unwrap();
    assert_eq!(channels.len(), 100, "{json:#}");
    for channel in channels {
        let command = channel["command"].as_str().unwrap_or_default();
        let expected: i64 = command.trim_start_matches("exit ").parse().unwrap();
        assert_eq!(channel["exit_status"].as_i64(), Some(expected), "{channel}");
    }
}
