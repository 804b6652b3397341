//! A PostgreSQL server of the test's own, made with `initdb` in a
//! temporary directory and run with `pg_ctl` on a free port (with
//! `fsync=on`), so a test can stop it hard and start it again. PostgreSQL
//! refuses to run as root: as root it runs as the `postgres` user
//! (`runuser`), in a directory that user owns.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub struct OwnPostgres {
    pub url: String,
    pub port: u16,
    data: PathBuf,
    sockets: PathBuf,
    /// Run the tools as this user (`None`: as ourselves).
    user: Option<&'static str>,
    _dir: tempfile::TempDir,
}

fn tool(name: &str) -> String {
    let local = Path::new("/usr/local/bin").join(name);
    if local.exists() {
        local.to_string_lossy().into_owned()
    } else {
        name.to_owned()
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

impl OwnPostgres {
    /// Makes and starts it; `None` (with the reason) when it cannot run
    /// here (outside CI).
    pub fn start() -> Option<OwnPostgres> {
        let dir = tempfile::tempdir().unwrap();
        let user = if is_root() { Some("postgres") } else { None };
        let data = dir.path().join("data");
        let sockets = dir.path().join("sock");
        std::fs::create_dir(&sockets).unwrap();
        if let Some(u) = user {
            let chown = Command::new("chown")
                .args(["-R", &format!("{u}:")])
                .arg(dir.path())
                .output();
            if !chown.is_ok_and(|o| o.status.success()) {
                return skip(&format!("cannot give the data directory to user {u}"));
            }
        }
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let pg = OwnPostgres {
            url: format!("postgres://postgres@127.0.0.1:{port}/postgres"),
            port,
            data,
            sockets,
            user,
            _dir: dir,
        };
        let init = pg.run(
            "initdb",
            &[
                "-D",
                &pg.data.to_string_lossy(),
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-sync",
            ],
        );
        if !init.status.success() {
            return skip(&format!(
                "initdb failed: {}",
                String::from_utf8_lossy(&init.stderr)
            ));
        }
        if let Err(e) = pg.start_server() {
            return skip(&e);
        }
        Some(pg)
    }

    fn run(&self, name: &str, args: &[&str]) -> Output {
        let mut cmd = match self.user {
            Some(u) => {
                let mut c = Command::new("runuser");
                c.args(["-u", u, "--", &tool(name)]);
                c
            }
            None => Command::new(tool(name)),
        };
        cmd.args(args).output().unwrap_or_else(|e| Output {
            status: std::os::unix::process::ExitStatusExt::from_raw(1 << 8),
            stdout: Vec::new(),
            stderr: format!("{name}: {e}").into_bytes(),
        })
    }

    fn start_server(&self) -> Result<(), String> {
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=on -c max_connections=50",
            self.port,
            self.sockets.to_string_lossy()
        );
        let log = self.data.join("../server.log");
        let out = self.run(
            "pg_ctl",
            &[
                "-D",
                &self.data.to_string_lossy(),
                "-l",
                &log.to_string_lossy(),
                "-o",
                &opts,
                "-w",
                "start",
            ],
        );
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "pg_ctl start failed: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    }

    /// Starts it again (after `stop`).
    pub fn start_again(&self) {
        self.start_server().unwrap();
    }

    /// Stops it at once, as a crash would (`-m immediate`: no checkpoint,
    /// connections dropped; recovery replays the WAL at the next start).
    pub fn stop_immediate(&self) {
        let out = self.run(
            "pg_ctl",
            &[
                "-D",
                &self.data.to_string_lossy(),
                "-m",
                "immediate",
                "-w",
                "stop",
            ],
        );
        assert!(
            out.status.success(),
            "pg_ctl stop: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

fn skip(why: &str) -> Option<OwnPostgres> {
    assert!(
        std::env::var_os("CI").is_none(),
        "PostgreSQL of the test's own: {why}"
    );
    eprintln!("skipping: PostgreSQL of the test's own: {why}");
    None
}

impl Drop for OwnPostgres {
    fn drop(&mut self) {
        let _ = self.run(
            "pg_ctl",
            &[
                "-D",
                &self.data.to_string_lossy(),
                "-m",
                "immediate",
                "stop",
            ],
        );
    }
}
