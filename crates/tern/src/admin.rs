//! Admin commands: `tern user add`, `tern token`, `tern secret rotate`,
//! `tern config example`.
//! They open the store and token secret the configuration names (the
//! same `--data` / `--config` / `TERN_*` layering as `tern serve`) and work
//! while a server runs on them.

use anyhow::Context;
use std::io::{BufRead, Write};
use std::path::PathBuf;
use tern_server::admin::Admin;

/// The example configuration: every setting at its default, commented.
pub const EXAMPLE_CONFIG: &str = include_str!("../../../tern.example.toml");

/// Where the store and secret are: as for `tern serve`.
#[derive(clap::Args)]
pub struct StoreArgs {
    /// Data directory of the embedded store (default ./tern-data).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// TOML configuration file; `TERN_*` variables and flags override it.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Create the data directory and an empty embedded store if there is
    /// none (without it, a directory that holds no store is refused).
    #[arg(long)]
    pub create: bool,
}

impl StoreArgs {
    /// The configuration, once its store is known to exist (or `--create`
    /// asks for a new one).
    pub fn load(&self) -> anyhow::Result<tern_server::Config> {
        let mut cfg = tern_server::Config::load(self.config.as_deref())?;
        if let Some(d) = &self.data {
            cfg.data_dir = d.clone();
        }
        tern_server::admin::check_store(&cfg, self.create)?;
        Ok(cfg)
    }
}

#[derive(clap::Subcommand)]
pub enum UserCmd {
    /// Create a user (as `POST /v1/users` would). The password is asked
    /// twice on the terminal, or read from standard input.
    Add(UserAddArgs),
}

#[derive(clap::Args)]
pub struct UserAddArgs {
    /// The user id: 1-64 characters of A-Z a-z 0-9 _ . -
    pub name: String,
    /// Display name (default: the user id).
    #[arg(long = "name", value_name = "DISPLAY")]
    pub display: Option<String>,
    /// Read the password from the first line of standard input.
    #[arg(long, conflicts_with = "bot")]
    pub password_stdin: bool,
    /// A bot: an account without a password (it cannot log in); mint its
    /// token with `tern token NAME --ttl 365d`.
    #[arg(long)]
    pub bot: bool,
    #[command(flatten)]
    pub store: StoreArgs,
}

#[derive(clap::Args)]
pub struct TokenArgs {
    /// The user the token is for.
    pub name: String,
    /// Lifetime: seconds, or a number with s, m, h or d (default:
    /// `auth.token_ttl_secs`).
    #[arg(long, value_parser = parse_ttl)]
    pub ttl: Option<u64>,
    #[command(flatten)]
    pub store: StoreArgs,
}

#[derive(clap::Subcommand)]
pub enum SecretCmd {
    /// Add a new token signing key to the store: new tokens are signed
    /// with it (by every server within a minute), tokens signed with
    /// older keys stay valid until they expire. Prints the new key's id.
    Rotate(StoreArgs),
}

#[derive(clap::Subcommand)]
pub enum ConfigCmd {
    /// Print the example configuration (every setting at its default).
    Example,
}

pub fn config(cmd: ConfigCmd) -> anyhow::Result<()> {
    match cmd {
        ConfigCmd::Example => {
            let mut out = std::io::stdout().lock();
            out.write_all(EXAMPLE_CONFIG.as_bytes())?;
            out.flush()?;
            Ok(())
        }
    }
}

pub fn user(cmd: UserCmd, cfg: tern_server::Config) -> anyhow::Result<()> {
    let UserCmd::Add(args) = cmd;
    if args.bot {
        return runtime()?.block_on(async {
            let admin = Admin::open(cfg).await?;
            admin
                .add_bot(&args.name, args.display.as_deref())
                .await
                .map_err(|e| anyhow::anyhow!("{} ({})", e.message, e.code))?;
            println!("created bot {}", args.name);
            Ok(())
        });
    }
    let password = if args.password_stdin {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .context("reading the password from standard input")?;
        let line = line.strip_suffix('\n').unwrap_or(&line);
        line.strip_suffix('\r').unwrap_or(line).to_owned()
    } else {
        let first = rpassword::prompt_password(format!("Password for {}: ", args.name))
            .context("reading the password (use --password-stdin without a terminal)")?;
        let again = rpassword::prompt_password("Again: ").context("reading the password")?;
        if first != again {
            anyhow::bail!("the passwords differ");
        }
        first
    };
    runtime()?.block_on(async {
        let admin = Admin::open(cfg).await?;
        admin
            .add_user(&args.name, &password, args.display.as_deref())
            .await
            .map_err(|e| anyhow::anyhow!("{} ({})", e.message, e.code))?;
        println!("created user {}", args.name);
        Ok(())
    })
}

pub fn token(args: TokenArgs, cfg: tern_server::Config) -> anyhow::Result<()> {
    let ttl = args.ttl.unwrap_or(cfg.auth.token_ttl_secs);
    runtime()?.block_on(async {
        let admin = Admin::open(cfg).await?;
        let (token, _expires_at) = admin.token(&args.name, ttl).await?;
        println!("{token}");
        Ok(())
    })
}

pub fn secret(cmd: SecretCmd, cfg: tern_server::Config) -> anyhow::Result<()> {
    let SecretCmd::Rotate(_) = cmd;
    runtime()?.block_on(async {
        let admin = Admin::open(cfg).await?;
        let key = admin.rotate_secret().await?;
        println!("new signing key {}", key.kid);
        Ok(())
    })
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}

/// `3600`, `45s`, `90m`, `12h`, `30d` -> seconds.
pub fn parse_ttl(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let (digits, unit) = match s.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => (&s[..i], c),
        _ => (s, 's'),
    };
    let scale = match unit {
        's' => 1,
        'm' => 60,
        'h' => 3600,
        'd' => 86_400,
        _ => return Err(format!("unknown unit {unit:?}: use s, m, h or d")),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "{s:?} is not a lifetime like 3600, 90m, 12h or 30d"
        ));
    }
    let n: u64 = digits.parse().map_err(|e| format!("{s:?}: {e}"))?;
    match n.checked_mul(scale) {
        Some(0) => Err("the lifetime must be at least 1 second".into()),
        Some(v) => Ok(v),
        None => Err(format!("{s:?} is too long")),
    }
}

#[cfg(test)]
mod tests {
    use super::parse_ttl;

    #[test]
    fn ttl_units() {
        assert_eq!(parse_ttl("3600"), Ok(3600));
        assert_eq!(parse_ttl("45s"), Ok(45));
        assert_eq!(parse_ttl("90m"), Ok(5400));
        assert_eq!(parse_ttl("12h"), Ok(43_200));
        assert_eq!(parse_ttl("30d"), Ok(2_592_000));
        for bad in [
            "",
            "d",
            "0",
            "0d",
            "-5",
            "5w",
            "1.5h",
            "h5",
            "99999999999999999999",
        ] {
            assert!(parse_ttl(bad).is_err(), "{bad:?} accepted");
        }
    }
}
