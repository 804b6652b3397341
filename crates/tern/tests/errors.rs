//! How the binary reports a fatal error: one line for people, one JSON
//! object in JSON log mode, a backtrace only when asked for with
//! `--verbose` (or a debug `RUST_LOG`), whatever `RUST_BACKTRACE` says.

use serde_json::Value;
use std::process::{Command, Output};

/// `tern` with no `TERN_*` or `RUST_LOG` of the caller, and with
/// `RUST_BACKTRACE=1`, as a developer's shell often has it.
fn tern(args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tern"));
    cmd.args(args);
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("TERN_") {
            cmd.env_remove(&k);
        }
    }
    cmd.env_remove("RUST_LOG")
        .env_remove("RUST_LIB_BACKTRACE")
        .env("RUST_BACKTRACE", "1");
    cmd
}

fn run(mut cmd: Command) -> (Output, String) {
    let out = cmd.output().expect("run tern");
    assert!(!out.status.success(), "tern must fail: {out:?}");
    assert!(out.stdout.is_empty(), "nothing on stdout: {out:?}");
    let err = String::from_utf8(out.stderr.clone()).unwrap();
    (out, err)
}

/// A configuration file with an unknown key: start-up fails before the
/// log is installed.
fn bad_config(dir: &tempfile::TempDir) -> String {
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, "[limits]\nframe_byte = 4096\n").unwrap();
    path.to_str().unwrap().to_owned()
}

fn one_json_error(stderr: &str) -> Value {
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one line: {stderr:?}");
    let v: Value = serde_json::from_str(lines[0]).expect("a JSON line");
    assert_eq!(v["level"], "ERROR", "{v}");
    assert!(v["timestamp"].is_string(), "{v}");
    assert!(v["fields"]["message"].is_string(), "{v}");
    v
}

#[test]
fn fatal_error_in_json_mode_is_one_json_line() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = bad_config(&dir);

    // By flag, before any log line.
    let (_, err) = run(tern(&["serve", "--config", &cfg, "--log-format", "json"]));
    let v = one_json_error(&err);
    let msg = v["fields"]["message"].as_str().unwrap();
    assert!(msg.contains("frame_byte"), "names the key: {msg}");
    assert!(!msg.contains("backtrace"), "no backtrace: {msg}");

    // By variable: the configuration that names the format is the error.
    let mut cmd = tern(&["serve", "--config", &cfg]);
    cmd.env("TERN_LOG__FORMAT", "json");
    let (_, err) = run(cmd);
    one_json_error(&err);

    // After the log is installed: every line, the fatal one included, is
    // a JSON object.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let data = dir.path().join("data");
    let (_, err) = run(tern(&[
        "serve",
        "--listen",
        &addr,
        "--data",
        data.to_str().unwrap(),
        "--log-format",
        "json",
    ]));
    let last = err.lines().last().expect("a line");
    for line in err.lines() {
        serde_json::from_str::<Value>(line).unwrap_or_else(|e| panic!("{e}: {line}"));
    }
    one_json_error(last);
    assert!(last.contains(&addr), "names the address: {last}");
}

#[test]
fn no_backtrace_without_verbose() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = bad_config(&dir);

    let (_, err) = run(tern(&["serve", "--config", &cfg]));
    assert_eq!(err.lines().count(), 1, "one line: {err:?}");
    assert!(err.starts_with("tern: error: "), "{err:?}");
    assert!(err.contains("frame_byte"), "names the key: {err:?}");
    assert!(
        !err.contains("backtrace") && !err.contains("Caused by"),
        "{err:?}"
    );

    // Asked for: the cause chain and the captured backtrace.
    let (_, err) = run(tern(&["serve", "--config", &cfg, "--verbose"]));
    assert!(err.contains("Caused by"), "{err}");
    assert!(err.contains("backtrace"), "{err}");

    let mut cmd = tern(&["serve", "--config", &cfg]);
    cmd.env("RUST_LOG", "debug");
    let (_, err) = run(cmd);
    assert!(err.contains("backtrace"), "{err}");
}
