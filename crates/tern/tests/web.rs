//! The web client end to end: a real `tern serve` and two users chatting
//! in headless Chromium (`tests/web/e2e.mjs`, driven by playwright-core),
//! with a page reload and a server restart in the middle. The server's
//! upload limit is small here ([`MAX_BYTES`]) so that the page's refusal
//! of a larger file is cheap to show.
//!
//! Needs `node`, `npm ci` done in `tests/web/` and `/usr/bin/chromium`
//! (`.ci/run` installs both). Without them the test is skipped with a
//! message, except under CI (`CI` set), where it fails. Screenshots go to
//! `$TERN_WEB_SCREENSHOTS` when set (`docs/screenshots` to refresh the
//! committed ones), else to a temporary directory.

mod support;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use support::{tern_cmd, Tern};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::Command;
use tokio::time::timeout;

/// The whole browser run: generous, it is many steps on a shared machine.
const RUN_LIMIT: Duration = Duration::from_secs(300);

/// `media.max_bytes` of the server under test (`e2e.mjs` knows it too).
const MAX_BYTES: u64 = 262_144;

fn web_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/web")
}

fn chromium() -> PathBuf {
    std::env::var_os("TERN_CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"))
}

/// What is missing to run the browser test, if anything.
fn missing() -> Option<String> {
    let node = std::process::Command::new("node")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    if !node.is_ok_and(|s| s.success()) {
        return Some("node is not installed".into());
    }
    if !web_dir().join("node_modules/playwright-core").is_dir() {
        return Some(format!(
            "playwright-core is not installed (run `npm ci` in {})",
            web_dir().display()
        ));
    }
    if !chromium().exists() {
        return Some(format!("{} is not installed", chromium().display()));
    }
    None
}

/// A `tern serve` on `addr` (port 0: any) with data in `data` and its
/// configuration file in `config`.
async fn serve(data: &Path, config: &Path, addr: &str) -> Tern {
    Tern::spawn(tern_cmd(&[
        "serve",
        "--listen",
        addr,
        "--data",
        data.to_str().unwrap(),
        "--config",
        config.to_str().unwrap(),
    ]))
    .await
}

#[tokio::test]
async fn two_users_chat_in_chromium() {
    if let Some(what) = missing() {
        if std::env::var_os("CI").is_some() {
            panic!("{what} (CI must run the web client test)");
        }
        eprintln!("skipping: {what}");
        return;
    }
    let data = tempfile::tempdir().unwrap();
    let etc = tempfile::tempdir().unwrap();
    let config = etc.path().join("tern.toml");
    std::fs::write(&config, format!("[media]\nmax_bytes = {MAX_BYTES}\n")).unwrap();
    let mut tern = Some(serve(data.path(), &config, "127.0.0.1:0").await);
    let addr = tern.as_ref().unwrap().addr;
    let shots_tmp = tempfile::tempdir().unwrap();
    let shots = std::env::var_os("TERN_WEB_SCREENSHOTS")
        .map(|d| {
            let d = PathBuf::from(d);
            // Relative to the workspace, as the variable is given there.
            if d.is_relative() {
                Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").join(d)
            } else {
                d
            }
        })
        .unwrap_or_else(|| shots_tmp.path().to_path_buf());

    let mut node = Command::new("node")
        .arg(web_dir().join("e2e.mjs"))
        .arg(format!("http://{addr}/"))
        .arg(&shots)
        .current_dir(web_dir())
        .env("TERN_CHROMIUM", chromium())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("start node");
    let mut stdin = node.stdin.take().unwrap();
    let mut lines = BufReader::new(node.stdout.take().unwrap()).lines();

    let drive = async {
        while let Some(line) = lines.next_line().await.expect("read node's stdout") {
            match line.trim() {
                "tern-e2e: stop" => {
                    // Graceful: the server closes the sockets with 1001
                    // after its stored-but-unpushed work.
                    let mut t = tern.take().expect("server running");
                    t.sigterm();
                    let st = t.wait_exit(Duration::from_secs(30)).await;
                    assert!(st.success(), "tern exited with {st}:\n{}", t.stderr());
                    stdin.write_all(b"stopped\n").await.unwrap();
                }
                "tern-e2e: start" => {
                    // The same address: the pages reconnect to it.
                    tern = Some(serve(data.path(), &config, &addr.to_string()).await);
                    stdin.write_all(b"started\n").await.unwrap();
                }
                other => println!("node: {other}"),
            }
        }
        node.wait().await.expect("wait for node")
    };
    let status = match timeout(RUN_LIMIT, drive).await {
        Ok(s) => s,
        Err(_) => panic!("the browser test did not finish within {RUN_LIMIT:?}"),
    };
    let server_log = tern.as_ref().map(|t| t.stderr()).unwrap_or_default();
    assert!(
        status.success(),
        "the browser test failed ({status}); screenshots in {}; server log:\n{server_log}",
        shots.display()
    );
    for name in [
        "desktop.png",
        "phone.png",
        "desktop-chat.png",
        "phone-chat.png",
    ] {
        assert!(shots.join(name).is_file(), "no screenshot {name}");
    }
}
