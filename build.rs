//! Embeds asciinema-player (declared in `player/package.json`, pinned by its lock file) into
//! the binary for the offline `player.html` of dispute bundles. `npm ci` installs it into
//! `OUT_DIR`, never into the source tree, and no built file of the package is committed.
//!
//! Without npm (or without the registry), chaperone still builds: the two assets are left
//! empty and `recordings export --bundle` says why it cannot write a player.

use std::path::{Path, PathBuf};
use std::process::Command;

const FILES: [&str; 2] = ["asciinema-player.min.js", "asciinema-player.css"];

fn main() {
    println!("cargo::rerun-if-changed=player/package.json");
    println!("cargo::rerun-if-changed=player/package-lock.json");
    let Some(out) = std::env::var_os("OUT_DIR").map(PathBuf::from) else {
        println!("cargo::error=OUT_DIR is not set");
        return;
    };
    let assets = out.join("player-assets");
    let problem = match install(&out.join("player")) {
        Ok(bundle) => copy_assets(&bundle, &assets).err(),
        Err(e) => Some(e),
    };
    if let Some(problem) = problem {
        println!(
            "cargo::warning=asciinema-player is not embedded ({problem}); `recordings export --bundle` will refuse"
        );
        for name in FILES {
            if let Err(e) = std::fs::create_dir_all(&assets).and_then(|_| std::fs::write(assets.join(name), "")) {
                println!("cargo::error=cannot write {}: {e}", assets.join(name).display());
            }
        }
        println!("cargo::rustc-env=CHAPERONE_PLAYER_MISSING={problem}");
    } else {
        println!("cargo::rustc-env=CHAPERONE_PLAYER_MISSING=");
    }
    println!("cargo::rustc-env=CHAPERONE_PLAYER_ASSETS={}", assets.display());
}

/// Runs `npm ci` in `dir` (a copy of `player/`) unless the same lock file is installed
/// there already; returns the package's `dist/bundle` folder.
fn install(dir: &Path) -> Result<PathBuf, String> {
    let lock = std::fs::read("player/package-lock.json").map_err(|e| format!("player/package-lock.json: {e}"))?;
    let manifest = std::fs::read("player/package.json").map_err(|e| format!("player/package.json: {e}"))?;
    let bundle = dir.join("node_modules/asciinema-player/dist/bundle");
    let installed_lock = std::fs::read(dir.join("installed-lock.json")).ok();
    if installed_lock.as_deref() == Some(&lock[..]) && bundle.join(FILES[0]).is_file() {
        return Ok(bundle);
    }
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    std::fs::write(dir.join("package.json"), &manifest).map_err(|e| e.to_string())?;
    std::fs::write(dir.join("package-lock.json"), &lock).map_err(|e| e.to_string())?;
    let npm = std::env::var("NPM").unwrap_or_else(|_| "npm".into());
    let output = Command::new(&npm)
        .args(["ci", "--ignore-scripts", "--no-audit", "--no-fund", "--loglevel=error"])
        .current_dir(dir)
        .output()
        .map_err(|e| format!("cannot run {npm}: {e}; install Node.js and npm"))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let first = stderr.lines().find(|l| !l.trim().is_empty()).unwrap_or("no message");
        return Err(format!("npm ci failed: {first}"));
    }
    std::fs::write(dir.join("installed-lock.json"), &lock).map_err(|e| e.to_string())?;
    Ok(bundle)
}

fn copy_assets(bundle: &Path, assets: &Path) -> Result<(), String> {
    std::fs::create_dir_all(assets).map_err(|e| format!("{}: {e}", assets.display()))?;
    for name in FILES {
        std::fs::copy(bundle.join(name), assets.join(name)).map_err(|e| format!("{name}: {e}"))?;
    }
    Ok(())
}
