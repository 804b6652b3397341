//! The admin commands and the log format, as people and scripts use them:
//! `tern user add`, `tern token` and `tern secret rotate` against the data directory of a
//! running `tern serve` process (the embedded SQLite store is shared by
//! both), `tern config example`, and what `tern serve` writes to a pipe.

use futures_util::StreamExt;
use serde_json::{json, Value};
use std::path::Path;
use std::process::Stdio;
use tokio::io::AsyncWriteExt;
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::Message;

mod support;
use support::{tern_cmd, Tern, PASSWORD, WAIT};

/// Runs a `tern` command to its end with `stdin` as its input; returns
/// (success, stdout, stderr).
async fn run(args: &[&str], stdin: &str) -> (bool, String, String) {
    let mut cmd = tern_cmd(args);
    cmd.stdin(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn tern");
    let mut input = child.stdin.take().unwrap();
    // A command that refuses at once may exit before it reads its input:
    // its stdin is then closed and the write fails with a broken pipe. That
    // is correct behaviour; the exit status and output below are what count.
    if let Err(e) = input.write_all(stdin.as_bytes()).await {
        assert_eq!(
            e.kind(),
            std::io::ErrorKind::BrokenPipe,
            "writing tern's stdin: {e}"
        );
    }
    drop(input);
    let out = timeout(WAIT, child.wait_with_output())
        .await
        .expect("tern exits in time")
        .expect("tern output");
    (
        out.status.success(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

fn data_args(dir: &Path) -> [&str; 2] {
    ["--data", dir.to_str().unwrap()]
}

#[tokio::test]
async fn user_add_and_token_work_beside_a_running_server() {
    let dir = tempfile::tempdir().unwrap();
    let server = Tern::start(dir.path()).await;
    let data = data_args(dir.path());

    // A user made by the command line logs in over HTTP.
    let mut args = vec![
        "user",
        "add",
        "carol",
        "--name",
        "Carol C",
        "--password-stdin",
    ];
    args.extend(data);
    let (ok, out, err) = run(&args, &format!("{PASSWORD}\n")).await;
    assert!(ok, "user add failed: {out} {err}");
    let (st, b) = server
        .post(
            "/v1/sessions",
            json!({"user": "carol", "password": PASSWORD}),
        )
        .await;
    assert_eq!(st, 200, "login of the new user: {b}");
    let token = b["token"].as_str().unwrap().to_owned();
    let (st, b) = server.get("/v1/users/carol", &token).await;
    assert_eq!((st, b["name"].as_str()), (200, Some("Carol C")), "{b}");

    // The same rules as registration over HTTP.
    let (ok, _, err) = run(&args, &format!("{PASSWORD}\n")).await;
    assert!(!ok && err.contains("user_exists"), "second add: {err}");
    let mut short = vec!["user", "add", "dave", "--password-stdin"];
    short.extend(data);
    let (ok, _, err) = run(&short, "short\n").await;
    assert!(!ok && err.contains("at least 8"), "short password: {err}");
    let mut bad_name = vec!["user", "add", "no spaces", "--password-stdin"];
    bad_name.extend(data);
    assert!(!run(&bad_name, "password1\n").await.0);

    // A user registered over HTTP gets a token from the command line,
    // which the running server accepts over HTTP and WebSocket.
    server.register("bot").await;
    let mut args = vec!["token", "bot", "--ttl", "30d"];
    args.extend(data);
    let (ok, out, err) = run(&args, "").await;
    assert!(ok, "token failed: {err}");
    let token = out.trim();
    assert_eq!(out.lines().count(), 1, "one line, the token: {out:?}");
    let (st, b) = server.get("/v1/friends", token).await;
    assert_eq!(st, 200, "the minted token over HTTP: {b}");
    let url = format!("ws://{}/v1/ws?token={token}&device=script", server.addr);
    let (mut ws, _) = timeout(WAIT, tokio_tungstenite::connect_async(url))
        .await
        .expect("WS connect in time")
        .expect("WS connect");
    let first = match timeout(WAIT, ws.next()).await.expect("a frame in time") {
        Some(Ok(Message::Text(t))) => serde_json::from_str::<Value>(&t).unwrap(),
        other => panic!("expected the auth ok, got {other:?}"),
    };
    assert_eq!(
        (
            first["type"].as_str(),
            first["user"].as_str(),
            first["device"].as_str()
        ),
        (Some("ok"), Some("bot"), Some("script")),
        "{first}"
    );

    // No token for a user that does not exist; bad lifetimes are refused.
    let mut nobody = vec!["token", "nobody"];
    nobody.extend(data);
    let (ok, _, err) = run(&nobody, "").await;
    assert!(!ok && err.contains("no such user"), "{err}");
    for ttl in ["0", "367d", "5w"] {
        let mut args = vec!["token", "bot", "--ttl", ttl];
        args.extend(data);
        assert!(!run(&args, "").await.0, "--ttl {ttl} accepted");
    }
    // The server went on serving throughout.
    let (st, _) = server
        .get("/v1/friends", &server.login("carol").await)
        .await;
    assert_eq!(st, 200);
}

#[tokio::test]
async fn a_token_minted_before_the_first_start_is_accepted() {
    // The command makes the store (asked to) and the secret the server
    // then reads.
    let dir = tempfile::tempdir().unwrap();
    let data = data_args(dir.path());
    let mut add = vec!["user", "add", "early", "--password-stdin", "--create"];
    add.extend(data);
    assert!(run(&add, &format!("{PASSWORD}\n")).await.0);
    let mut args = vec!["token", "early"];
    args.extend(data);
    let (ok, out, err) = run(&args, "").await;
    assert!(ok, "{err}");
    let server = Tern::start(dir.path()).await;
    let (st, b) = server.get("/v1/friends", out.trim()).await;
    assert_eq!(st, 200, "{b}");
}

/// A data directory that holds no store (missing, or empty) is refused
/// with one line and a failure, and nothing is made in it; `--create`
/// makes the store.
#[tokio::test]
async fn admin_commands_refuse_a_directory_without_a_store() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("tern-dta");
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    for data in [&missing, &empty] {
        let mut add = vec!["user", "add", "eve", "--password-stdin"];
        add.extend(data_args(data));
        let mut token = vec!["token", "eve"];
        token.extend(data_args(data));
        for (args, stdin) in [(&add, "password1\n"), (&token, "")] {
            let (ok, out, err) = run(args, stdin).await;
            assert!(!ok, "{args:?} succeeded: {out}");
            assert_eq!(err.lines().count(), 1, "one line: {err:?}");
            assert!(
                err.contains("no store in") && err.contains("--create"),
                "{err}"
            );
        }
    }
    assert!(!missing.exists(), "the missing directory was made");
    let left: Vec<_> = std::fs::read_dir(&empty).unwrap().collect();
    assert!(
        left.is_empty(),
        "files made in the empty directory: {left:?}"
    );

    // In the current directory by default: no ./tern-data appears.
    let mut cmd = tern_cmd(&["user", "add", "eve", "--password-stdin"]);
    cmd.current_dir(dir.path()).stdin(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn tern");
    drop(child.stdin.take());
    let out = timeout(WAIT, child.wait_with_output())
        .await
        .expect("tern exits in time")
        .expect("tern output");
    assert!(!out.status.success());
    assert!(
        !dir.path().join("tern-data").exists(),
        "./tern-data was made"
    );

    // Asked to, it makes the store; then it is found without the flag.
    let mut add = vec!["user", "add", "eve", "--password-stdin", "--create"];
    add.extend(data_args(&missing));
    let (ok, out, err) = run(&add, "password1\n").await;
    assert!(ok, "{out} {err}");
    let mut token = vec!["token", "eve"];
    token.extend(data_args(&missing));
    let (ok, out, err) = run(&token, "").await;
    assert!(ok && out.lines().count() == 1, "{out} {err}");
    let server = Tern::start(&missing).await;
    let (st, b) = server.get("/v1/friends", out.trim()).await;
    assert_eq!(st, 200, "{b}");
}

/// The kid a token's header names.
fn kid_of(token: &str) -> Option<String> {
    jsonwebtoken::decode_header(token).expect("a JWT").kid
}

/// A data directory of before the signing keys moved into the store: its
/// `secret.key` becomes the first key, so a token signed with it (no kid
/// in its header, as tokens were then) stays valid, and so do tokens across
/// restarts. `tern secret rotate` beside the running server: older tokens
/// still verify, newer ones carry the new kid and verify at once.
#[tokio::test]
async fn the_secret_file_of_before_stays_valid_and_keys_rotate() {
    let dir = tempfile::tempdir().unwrap();
    let data = data_args(dir.path());
    let secret = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
    std::fs::write(dir.path().join("secret.key"), secret).unwrap();
    let server = Tern::start(dir.path()).await;
    server.register("olda").await;
    // A token of before: no kid, signed with the file's secret.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let legacy = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &json!({
            "sub": "olda",
            "exp": now + 3600,
            "iat": now,
            "jti": "0123456789abcdef0123456789abcdef",
        }),
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap();
    assert_eq!(kid_of(&legacy), None);
    let (st, b) = server.get("/v1/friends", &legacy).await;
    assert_eq!(st, 200, "{b}");
    let login = server.login("olda").await;
    assert_eq!(kid_of(&login).as_deref(), Some("1"));
    let mut token = vec!["token", "olda"];
    token.extend(data);
    let (ok, minted, err) = run(&token, "").await;
    assert!(ok, "{err}");
    let minted = minted.trim().to_owned();
    assert_eq!(kid_of(&minted).as_deref(), Some("1"));
    let mut server = server;
    server.sigterm();
    assert!(server.wait_exit(WAIT).await.success());

    // Restarted: every token of before is still valid.
    let server = Tern::start(dir.path()).await;
    for t in [&legacy, &login, &minted] {
        let (st, b) = server.get("/v1/friends", t).await;
        assert_eq!(st, 200, "{b}");
    }

    // A rotation beside the running server.
    let mut rotate = vec!["secret", "rotate"];
    rotate.extend(data);
    let (ok, out, err) = run(&rotate, "").await;
    assert!(ok, "{err}");
    assert_eq!(out.trim(), "new signing key 2");
    let (ok, newer, err) = run(&token, "").await;
    assert!(ok, "{err}");
    let newer = newer.trim().to_owned();
    assert_eq!(kid_of(&newer).as_deref(), Some("2"));
    for t in [&legacy, &login, &minted, &newer] {
        let (st, b) = server.get("/v1/friends", t).await;
        assert_eq!(st, 200, "{b}");
    }
    // A kid no key has is refused.
    let forged = jsonwebtoken::encode(
        &jsonwebtoken::Header {
            kid: Some("99".into()),
            ..jsonwebtoken::Header::default()
        },
        &json!({
            "sub": "olda",
            "exp": now + 3600,
            "iat": now,
            "jti": "0123456789abcdef0123456789abcdee",
        }),
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap();
    let (st, _) = server.get("/v1/friends", &forged).await;
    assert_eq!(st, 401);
}

#[tokio::test]
async fn config_example_prints_the_example_file() {
    let (ok, out, err) = run(&["config", "example"], "").await;
    assert!(ok, "{err}");
    let file = include_str!("../../../tern.example.toml");
    assert_eq!(out, file);
}

#[tokio::test]
async fn serve_into_a_pipe_writes_no_escape_codes() {
    let dir = tempfile::tempdir().unwrap();
    let server = Tern::start(dir.path()).await;
    let log = log_with(&server, "listening").await;
    assert!(!log.contains('\x1b'), "escape codes in a pipe: {log:?}");
}

/// The server's log once it holds `needle` (its stderr is read in the
/// background).
async fn log_with(server: &Tern, needle: &str) -> String {
    let poll = async {
        loop {
            let log = server.stderr();
            if log.contains(needle) {
                return log;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    };
    match timeout(WAIT, poll).await {
        Ok(log) => log,
        Err(_) => panic!("{needle:?} never logged: {}", server.stderr()),
    }
}

/// Every line of a JSON log is one JSON object with a level and fields.
fn assert_json_lines(log: &str) {
    let lines: Vec<&str> = log.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(
        lines.iter().any(|l| l.contains("listening")),
        "the log: {log}"
    );
    for l in lines {
        let v: Value = serde_json::from_str(l)
            .unwrap_or_else(|e| panic!("not one JSON object per line ({e}): {l:?}"));
        assert!(
            v["level"].is_string() && v["fields"].is_object(),
            "a log object without level or fields: {l}"
        );
    }
    assert!(!log.contains('\x1b'), "escape codes in JSON: {log:?}");
}

#[tokio::test]
async fn json_log_format_by_flag_and_by_variable() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_str().unwrap();
    let by_flag = Tern::spawn(tern_cmd(&[
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--data",
        path,
        "--log-format",
        "json",
    ]))
    .await;
    assert_json_lines(&log_with(&by_flag, "listening").await);
    by_flag.kill9().await;

    let mut cmd = tern_cmd(&["serve", "--listen", "127.0.0.1:0", "--data", path]);
    cmd.env("TERN_LOG__FORMAT", "json");
    let by_env = Tern::spawn(cmd).await;
    assert_json_lines(&log_with(&by_env, "listening").await);
}

/// 5.6: `tern user add --bot` makes an account that cannot log in with a
/// password (401 `bad_credentials`, as a wrong password); `tern token`
/// mints its token, which works like any other.
#[tokio::test]
async fn a_bot_has_no_password_login_and_its_token_works() {
    let dir = tempfile::tempdir().unwrap();
    let server = Tern::start(dir.path()).await;
    let data = data_args(dir.path());
    let mut args = vec!["user", "add", "--bot", "helper", "--name", "Helper Bot"];
    args.extend(data);
    let (ok, out, err) = run(&args, "").await;
    assert!(ok, "user add --bot failed: {out} {err}");
    assert!(out.contains("created bot helper"), "{out}");
    for password in ["", "!bot", PASSWORD] {
        let (st, b) = server
            .post(
                "/v1/sessions",
                json!({"user": "helper", "password": password}),
            )
            .await;
        assert_eq!(
            (st, b["code"].as_str()),
            (401, Some("bad_credentials")),
            "{b}"
        );
    }
    // Taken like any user id.
    let (st, b) = server
        .post("/v1/users", json!({"user": "helper", "password": PASSWORD}))
        .await;
    assert_eq!((st, b["code"].as_str()), (409, Some("user_exists")), "{b}");

    let mut args = vec!["token", "helper", "--ttl", "365d"];
    args.extend(data);
    let (ok, out, err) = run(&args, "").await;
    assert!(ok, "token failed: {err}");
    let token = out.trim().to_owned();
    let (st, b) = server.get("/v1/users/helper", &token).await;
    assert_eq!((st, b["name"].as_str()), (200, Some("Helper Bot")), "{b}");
    assert_eq!(b["bot"], true, "the user view shows a bot: {b}");
    // It sends like a user.
    let human = server.user("human").await;
    let (_, b) = server.get("/v1/users/human", &token).await;
    assert_eq!(b.get("bot"), None, "no field for a person: {b}");
    let (st, b) = server
        .call(
            reqwest::Method::POST,
            "/v1/messages",
            Some(&token),
            Some(json!({"to":"human","client_msg_id":"b1","kind":"text","content":"beep"})),
        )
        .await;
    assert_eq!(st, 200, "{b}");
    let (st, h) = server
        .get(
            &format!("/v1/conversations/{}/messages", "dm:helper:human"),
            &human,
        )
        .await;
    assert_eq!(st, 200);
    assert_eq!(h["msgs"][0]["content"], "beep");
}
