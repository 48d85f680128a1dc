//! Settings: an optional TOML file (`--config`), overridden by command-line flags; checked at
//! start, with errors that name the file, the key and what to do.

use crate::store::pg_tls::PgTls;
use crate::store::postgres::{tls_key_in_url, uses_unix_socket};
use crate::store::Database;
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The TOML file. Every key is optional; unknown keys are errors.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    #[serde(default)]
    pub broker: BrokerFile,
    #[serde(default)]
    pub database: DatabaseFile,
    #[serde(default)]
    pub web: WebFile,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BrokerFile {
    pub host: Option<String>,
    pub port: Option<u16>,
    pub tls: Option<bool>,
    pub ca_file: Option<PathBuf>,
    pub username: Option<String>,
    pub password_file: Option<PathBuf>,
    pub client_id: Option<String>,
    pub topic: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseFile {
    pub url: Option<String>,
    pub sqlite: Option<PathBuf>,
    /// "disable" (the default) or "verify-full".
    pub sslmode: Option<String>,
    /// PEM CA file the server's certificate must chain to (with verify-full).
    pub sslrootcert: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebFile {
    pub listen: Option<String>,
    pub auth_token_file: Option<PathBuf>,
    pub basic_auth_user: Option<String>,
    pub basic_auth_password_file: Option<PathBuf>,
    pub stale_after_minutes: Option<u32>,
}

/// Command-line flags; each overrides the file's key of the same name.
#[derive(Debug, Default, Clone, clap::Args)]
pub struct Flags {
    /// TOML settings file (see fleet/fleet.toml).
    #[arg(long, env = "AGECAM_FLEET_CONFIG")]
    pub config: Option<PathBuf>,
    /// MQTT broker host [file: broker.host; default localhost].
    #[arg(long)]
    pub broker_host: Option<String>,
    /// MQTT broker port [broker.port; default 8883 with TLS, 1883 without].
    #[arg(long)]
    pub broker_port: Option<u16>,
    /// Connect with TLS, checked against --ca-file [broker.tls].
    #[arg(long)]
    pub tls: bool,
    /// PEM file of the CA(s) the broker's certificate must chain to [broker.ca_file].
    #[arg(long)]
    pub ca_file: Option<PathBuf>,
    /// Broker user name [broker.username].
    #[arg(long)]
    pub username: Option<String>,
    /// File whose first line is the broker password [broker.password_file].
    #[arg(long)]
    pub password_file: Option<PathBuf>,
    /// MQTT client id; fixed, so the broker keeps the session [broker.client_id; default agecam-fleet].
    #[arg(long)]
    pub client_id: Option<String>,
    /// Topic filter [broker.topic; default agecam/+/intervals].
    #[arg(long)]
    pub topic: Option<String>,
    /// PostgreSQL URL, postgres://USER:PASSWORD@HOST/DB [database.url]; without it, SQLite.
    #[arg(long, env = "AGECAM_FLEET_DATABASE_URL")]
    pub database_url: Option<String>,
    /// SQLite file when no database URL is set [database.sqlite; default agecam-fleet.sqlite].
    #[arg(long)]
    pub sqlite: Option<PathBuf>,
    /// Address of the web page [web.listen; default 127.0.0.1:8080].
    #[arg(long)]
    pub listen: Option<String>,
    /// File whose first line is the page's bearer token [web.auth_token_file].
    #[arg(long)]
    pub auth_token_file: Option<PathBuf>,
    /// File whose first line is the page's basic-auth password [web.basic_auth_password_file].
    #[arg(long)]
    pub basic_auth_password_file: Option<PathBuf>,
}

/// Everything resolved: secrets read, CA parsed, addresses parsed.
#[derive(Clone)]
pub struct Settings {
    pub broker: BrokerSettings,
    pub database: Database,
    pub web: WebSettings,
}

#[derive(Clone)]
pub struct BrokerSettings {
    pub host: String,
    pub port: u16,
    pub tls: Option<Arc<rustls::ClientConfig>>,
    pub username: Option<String>,
    pub password: Option<String>,
    pub client_id: String,
    pub topic: String,
}

impl std::fmt::Debug for BrokerSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the password.
        write!(f, "{}", self.describe())
    }
}

impl BrokerSettings {
    pub fn describe(&self) -> String {
        format!(
            "mqtt{}://{}{}:{} topic {} client id {}",
            if self.tls.is_some() { "s" } else { "" },
            self.username
                .as_ref()
                .map(|u| format!("{u}@"))
                .unwrap_or_default(),
            self.host,
            self.port,
            self.topic,
            self.client_id
        )
    }
}

#[derive(Clone)]
pub struct WebSettings {
    pub listen: SocketAddr,
    pub token: Option<String>,
    /// (user, password)
    pub basic: Option<(String, String)>,
    /// A unit whose latest interval ended longer ago than this is shown in red.
    pub stale_after_s: i64,
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never a password or token.
        f.debug_struct("Settings")
            .field("broker", &self.broker.describe())
            .field("database", &self.database.describe())
            .field("listen", &self.web.listen)
            .field("token", &self.web.token.is_some())
            .field("basic_auth", &self.web.basic.as_ref().map(|b| &b.0))
            .finish()
    }
}

/// A configuration problem, as one line for the user: the file (or the command line), the
/// key, and what to do.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config {}: cannot read it ({error}); give an existing TOML file or leave --config out", .path.display())]
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    /// Not TOML, or not the settings' keys; `line` is " line N" when known.
    #[error("config {}{line}: {message}; see fleet/fleet.toml for every key", .path.display())]
    Parse {
        path: PathBuf,
        line: String,
        message: String,
    },
    /// A key whose value cannot be used; `origin` is "config FILE" or "command line".
    #[error("{origin}, key `{key}`: {problem}")]
    Key {
        origin: String,
        key: &'static str,
        /// Boxed: a TLS error is large, and settings errors are rare.
        problem: Box<KeyProblem>,
    },
}

/// What is wrong with one key's value.
#[derive(Debug, thiserror::Error)]
pub enum KeyProblem {
    #[error(transparent)]
    Secret(#[from] SecretError),
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// A value out of range or contradicting another key; says what to write instead.
    #[error("{0}")]
    Invalid(String),
}

/// A secret file (password, token) that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("{}: cannot read it ({error}); it must exist and be readable by this user", .path.display())]
    Unreadable {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("{}: the first line is empty; it must hold the secret", .path.display())]
    Empty { path: PathBuf },
}

/// A CA file that cannot be used to check the broker's (or the database server's)
/// certificate.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{}: cannot read it ({error})", .path.display())]
    Unreadable {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("{}: not valid PEM ({error})", .path.display())]
    NotPem {
        path: PathBuf,
        error: rustls::pki_types::pem::Error,
    },
    #[error("{}: a certificate that cannot be a CA ({error})", .path.display())]
    NotCa { path: PathBuf, error: rustls::Error },
    #[error("{}: holds no PEM certificate (-----BEGIN CERTIFICATE-----)", .path.display())]
    NoCertificate { path: PathBuf },
    #[error("TLS setup: {0}")]
    Setup(rustls::Error),
}

impl Settings {
    /// Reads `flags.config` if given, applies the flags over it, reads the secret files.
    pub fn load(flags: &Flags) -> Result<Settings, ConfigError> {
        let (file, origin) = match &flags.config {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|error| ConfigError::Read {
                    path: path.clone(),
                    error,
                })?;
                (parse(&text, path)?, format!("config {}", path.display()))
            }
            None => (FileConfig::default(), "command line".to_string()),
        };
        resolve(file, flags, &origin)
    }
}

/// Parses the TOML text; errors name the file, line and key.
pub fn parse(text: &str, path: &Path) -> Result<FileConfig, ConfigError> {
    toml::from_str(text).map_err(|e| {
        let line = e
            .span()
            .map(|s| {
                format!(
                    " line {}",
                    text.get(..s.start).unwrap_or(text).matches('\n').count() + 1
                )
            })
            .unwrap_or_default();
        ConfigError::Parse {
            path: path.to_path_buf(),
            line,
            message: e.message().to_string(),
        }
    })
}

fn resolve(file: FileConfig, flags: &Flags, origin: &str) -> Result<Settings, ConfigError> {
    let bad = |key: &'static str, problem: KeyProblem| ConfigError::Key {
        origin: origin.to_string(),
        key,
        problem: Box::new(problem),
    };
    let invalid = |key: &'static str, what: String| bad(key, KeyProblem::Invalid(what));
    let b = file.broker;
    let tls_on = flags.tls || b.tls.unwrap_or(false);
    let ca_file = flags.ca_file.clone().or(b.ca_file);
    let tls = if tls_on {
        let ca = ca_file.ok_or_else(|| {
            invalid(
                "broker.ca_file",
                "TLS is on but no CA file is given; set broker.ca_file (or --ca-file) to the PEM CA that signed the broker's certificate".into(),
            )
        })?;
        Some(tls_config(&ca).map_err(|e| bad("broker.ca_file", e.into()))?)
    } else {
        if ca_file.is_some() {
            return Err(invalid(
                "broker.tls",
                "a CA file is given but TLS is off; set broker.tls = true (or --tls)".into(),
            ));
        }
        None
    };
    let password = match flags.password_file.clone().or(b.password_file) {
        Some(f) => Some(read_secret(&f).map_err(|e| bad("broker.password_file", e.into()))?),
        None => None,
    };
    let username = flags.username.clone().or(b.username);
    if password.is_some() && username.is_none() {
        return Err(invalid(
            "broker.username",
            "a password file is given without a user name; set broker.username".into(),
        ));
    }
    let topic = flags
        .topic
        .clone()
        .or(b.topic)
        .unwrap_or_else(|| "agecam/+/intervals".into());
    if !topic.ends_with("/intervals") || topic.is_empty() || topic.contains('#') {
        return Err(invalid(
            "broker.topic",
            format!("{topic:?}: must be a filter ending in /intervals without '#', like agecam/+/intervals"),
        ));
    }
    let client_id = flags
        .client_id
        .clone()
        .or(b.client_id)
        .unwrap_or_else(|| "agecam-fleet".into());
    if client_id.is_empty() || client_id.len() > 23 * 4 {
        return Err(invalid(
            "broker.client_id",
            format!("{client_id:?}: 1 to 92 characters"),
        ));
    }
    let broker = BrokerSettings {
        host: flags
            .broker_host
            .clone()
            .or(b.host)
            .unwrap_or_else(|| "localhost".into()),
        port: flags
            .broker_port
            .or(b.port)
            .unwrap_or(if tls.is_some() { 8883 } else { 1883 }),
        tls,
        username,
        password,
        client_id,
        topic,
    };

    let d = file.database;
    let verify = match d.sslmode.as_deref().unwrap_or("disable") {
        "disable" => false,
        "verify-full" => true,
        weak @ ("require" | "prefer" | "allow") => {
            return Err(invalid(
                "database.sslmode",
                format!("{weak:?} would encrypt without checking who the server is (anyone on the way could pose as it), so it is not offered; write \"verify-full\" with database.sslrootcert, or \"disable\" on a trusted network"),
            ))
        }
        "verify-ca" => {
            return Err(invalid(
                "database.sslmode",
                "\"verify-ca\" would not check the server's host name, so it is not offered; write \"verify-full\" with database.sslrootcert".into(),
            ))
        }
        other => {
            return Err(invalid(
                "database.sslmode",
                format!("{other:?}: write \"disable\" (the default) or \"verify-full\""),
            ))
        }
    };
    let database = match flags.database_url.clone().or(d.url) {
        Some(url) if !url.is_empty() => {
            if flags.sqlite.is_some() || d.sqlite.is_some() {
                return Err(invalid(
                    "database.sqlite",
                    "both a PostgreSQL URL and an SQLite file are set; keep one".into(),
                ));
            }
            if let Some(key) = tls_key_in_url(&url) {
                return Err(invalid(
                    "database.url",
                    format!("`{key}` in the URL is not read; take it out and set database.sslmode = \"verify-full\" and database.sslrootcert in the config file instead"),
                ));
            }
            match (verify, d.sslrootcert) {
                (false, None) => Database::Postgres(url),
                (false, Some(_)) => {
                    return Err(invalid(
                        "database.sslmode",
                        "database.sslrootcert is given but sslmode is \"disable\"; set database.sslmode = \"verify-full\" (or remove sslrootcert)".into(),
                    ))
                }
                (true, None) => {
                    return Err(invalid(
                        "database.sslrootcert",
                        "database.sslmode is \"verify-full\" but no CA file is given; set database.sslrootcert to the PEM CA that signed the server's certificate".into(),
                    ))
                }
                (true, Some(ca)) => {
                    if uses_unix_socket(&url) {
                        return Err(invalid(
                            "database.url",
                            "a Unix socket path as host is not encrypted; with database.sslmode = \"verify-full\" give the server's TCP host name".into(),
                        ));
                    }
                    let config =
                        tls_config(&ca).map_err(|e| bad("database.sslrootcert", e.into()))?;
                    Database::PostgresTls {
                        url,
                        tls: PgTls {
                            ca_file: ca,
                            config,
                        },
                    }
                }
            }
        }
        _ => {
            if verify || d.sslrootcert.is_some() {
                return Err(invalid(
                    if verify {
                        "database.sslmode"
                    } else {
                        "database.sslrootcert"
                    },
                    "applies to PostgreSQL only, but no database.url is set (the SQLite file is used); set database.url or remove it".into(),
                ));
            }
            Database::Sqlite(
                flags
                    .sqlite
                    .clone()
                    .or(d.sqlite)
                    .unwrap_or_else(|| PathBuf::from("agecam-fleet.sqlite")),
            )
        }
    };

    let w = file.web;
    let listen_text = flags
        .listen
        .clone()
        .or(w.listen)
        .unwrap_or_else(|| "127.0.0.1:8080".into());
    let listen: SocketAddr = listen_text.parse().map_err(|_| {
        invalid(
            "web.listen",
            format!("{listen_text:?} is not an address:port like 127.0.0.1:8080"),
        )
    })?;
    let token = match flags.auth_token_file.clone().or(w.auth_token_file) {
        Some(f) => Some(read_secret(&f).map_err(|e| bad("web.auth_token_file", e.into()))?),
        None => None,
    };
    let basic = match flags
        .basic_auth_password_file
        .clone()
        .or(w.basic_auth_password_file)
    {
        Some(f) => Some((
            w.basic_auth_user.unwrap_or_else(|| "fleet".into()),
            read_secret(&f).map_err(|e| bad("web.basic_auth_password_file", e.into()))?,
        )),
        None => None,
    };
    if !listen.ip().is_loopback() && token.is_none() && basic.is_none() {
        return Err(invalid(
            "web.listen",
            format!(
                "{listen} is reachable from other machines, so the page needs a login: set web.auth_token_file or web.basic_auth_password_file (or listen on 127.0.0.1)"
            ),
        ));
    }
    let stale = w.stale_after_minutes.unwrap_or(60);
    if stale == 0 {
        return Err(invalid(
            "web.stale_after_minutes",
            "0: give 1 or more minutes".into(),
        ));
    }
    Ok(Settings {
        broker,
        database,
        web: WebSettings {
            listen,
            token,
            basic,
            stale_after_s: stale as i64 * 60,
        },
    })
}

/// The first line of a secret file; an error when unreadable or empty.
pub fn read_secret(path: &Path) -> Result<String, SecretError> {
    let text = std::fs::read_to_string(path).map_err(|error| SecretError::Unreadable {
        path: path.to_path_buf(),
        error,
    })?;
    let line = text.lines().next().unwrap_or("").trim_end_matches('\r');
    if line.is_empty() {
        return Err(SecretError::Empty {
            path: path.to_path_buf(),
        });
    }
    Ok(line.to_string())
}

/// A rustls client configuration (ring provider) trusting only the CAs in `ca_file`.
pub fn tls_config(ca_file: &Path) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::CertificateDer;
    let path = || ca_file.to_path_buf();
    let pem = std::fs::read(ca_file).map_err(|error| TlsError::Unreadable {
        path: path(),
        error,
    })?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        let cert = cert.map_err(|error| TlsError::NotPem {
            path: path(),
            error,
        })?;
        roots.add(cert).map_err(|error| TlsError::NotCa {
            path: path(),
            error,
        })?;
    }
    if roots.is_empty() {
        return Err(TlsError::NoCertificate { path: path() });
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(TlsError::Setup)?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(toml: &str, flags: Flags) -> Result<Settings, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fleet.toml");
        std::fs::write(&path, toml).unwrap();
        Settings::load(&Flags {
            config: Some(path),
            ..flags
        })
    }

    /// The error `load` gives, as the user reads it.
    fn error(toml: &str, flags: Flags) -> String {
        load(toml, flags).unwrap_err().to_string()
    }

    #[test]
    fn defaults_are_a_laptop_setup() {
        let s = load("", Flags::default()).unwrap();
        assert_eq!(s.broker.host, "localhost");
        assert_eq!(s.broker.port, 1883);
        assert_eq!(s.broker.topic, "agecam/+/intervals");
        assert_eq!(s.broker.client_id, "agecam-fleet");
        assert_eq!(s.database, Database::Sqlite("agecam-fleet.sqlite".into()));
        assert_eq!(s.web.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(s.web.stale_after_s, 3600);
    }

    #[test]
    fn the_documented_example_file_loads() {
        let text = include_str!("../fleet.toml");
        let file = parse(text, Path::new("fleet/fleet.toml")).unwrap();
        assert_eq!(file.broker.topic.as_deref(), Some("agecam/+/intervals"));
    }

    #[test]
    fn flags_override_the_file_and_the_url_selects_postgres() {
        let s = load(
            "[broker]\nhost = \"a\"\nport = 1\n[database]\nurl = \"postgres://x@db/fleet\"\n",
            Flags {
                broker_host: Some("b".into()),
                ..Flags::default()
            },
        )
        .unwrap();
        assert_eq!((s.broker.host.as_str(), s.broker.port), ("b", 1));
        assert_eq!(
            s.database,
            Database::Postgres("postgres://x@db/fleet".into())
        );
    }

    #[test]
    fn errors_name_the_file_the_key_and_what_to_do() {
        let e = error("[broker]\nhots = \"a\"\n", Flags::default());
        assert!(e.contains("fleet.toml line 2") && e.contains("hots"), "{e}");
        let e = error("[broker]\nport = \"x\"\n", Flags::default());
        assert!(e.contains("line 2"), "{e}");
        let e = error("[web]\nlisten = \"0.0.0.0:8080\"\n", Flags::default());
        assert!(
            e.contains("key `web.listen`") && e.contains("auth_token_file"),
            "{e}"
        );
        let e = error("[broker]\ntls = true\n", Flags::default());
        assert!(e.contains("broker.ca_file"), "{e}");
        let e = error(
            "[broker]\npassword_file = \"/nonexistent/pw\"\nusername = \"u\"\n",
            Flags::default(),
        );
        assert!(
            e.contains("broker.password_file") && e.contains("/nonexistent/pw"),
            "{e}"
        );
        let e = error("[broker]\ntopic = \"agecam/#\"\n", Flags::default());
        assert!(e.contains("broker.topic"), "{e}");
        let e = error(
            "[database]\nurl = \"postgres://a/b\"\nsqlite = \"x\"\n",
            Flags::default(),
        );
        assert!(e.contains("keep one"), "{e}");
    }

    #[test]
    fn any_other_address_starts_only_with_a_login() {
        let dir = tempfile::tempdir().unwrap();
        let token = dir.path().join("token");
        std::fs::write(&token, "s3cret\n").unwrap();
        let s = load(
            &format!(
                "[web]\nlisten = \"0.0.0.0:8080\"\nauth_token_file = {:?}\n",
                token.display().to_string()
            ),
            Flags::default(),
        )
        .unwrap();
        assert_eq!(s.web.token.as_deref(), Some("s3cret"));
        std::fs::write(&token, "\n").unwrap();
        let e = error(
            &format!(
                "[web]\nlisten = \"0.0.0.0:8080\"\nauth_token_file = {:?}\n",
                token.display().to_string()
            ),
            Flags::default(),
        );
        assert!(e.contains("first line is empty"), "{e}");
    }

    /// A self-signed EC CA certificate (no key kept; the one of tests/fuzz_seeds.rs).
    const CA_PEM: &str = "-----BEGIN CERTIFICATE-----
MIIBkjCCATegAwIBAgIUBGpAKW4PuOPOMSF1FwpfZBQSLxAwCgYIKoZIzj0EAwIw
HjEcMBoGA1UEAwwTYWdlY2FtIGZ1enogc2VlZCBDQTAeFw0yNjEyMDIxNjQ1MDVa
Fw0zNjExMjkxNjQ1MDVaMB4xHDAaBgNVBAMME2FnZWNhbSBmdXp6IHNlZWQgQ0Ew
WTATBgcqhkjOPQIBBggqhkjOPQMBBwNCAARy3p9Igo/RDztB7EoOGUzkswnvYmg9
rvBRRfh+jNp3Lsp1YHCkl5EK1VanYRBsIbnAAX7zTKqli0ix6aQD0bMQo1MwUTAd
BgNVHQ4EFgQUyRVQZTSeQ2GOpY1JRiRKyE2TGjgwHwYDVR0jBBgwFoAUyRVQZTSe
Q2GOpY1JRiRKyE2TGjgwDwYDVR0TAQH/BAUwAwEB/zAKBggqhkjOPQQDAgNJADBG
AiEA8h12Oq3qPPXqbLErNfoqWc4BPoRf08yXFdEMveZG+94CIQCaVn+mW6buu5I8
vLqZPIrLeLqyZ7r+AT0ZTmzJORTicg==
-----END CERTIFICATE-----
";

    #[test]
    fn database_tls_is_off_by_default_and_verify_full_needs_a_ca() {
        let url = "[database]\nurl = \"postgres://fleet@db.example.org/fleet\"\n";
        let s = load(url, Flags::default()).unwrap();
        assert_eq!(
            s.database,
            Database::Postgres("postgres://fleet@db.example.org/fleet".into())
        );
        let s = load(&format!("{url}sslmode = \"disable\"\n"), Flags::default()).unwrap();
        assert!(matches!(s.database, Database::Postgres(_)));

        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("db-ca.pem");
        std::fs::write(&ca, CA_PEM).unwrap();
        let ca_key = format!("sslrootcert = {:?}\n", ca.display().to_string());
        let s = load(
            &format!("{url}sslmode = \"verify-full\"\n{ca_key}"),
            Flags::default(),
        )
        .unwrap();
        match &s.database {
            Database::PostgresTls { url, tls } => {
                assert_eq!(url, "postgres://fleet@db.example.org/fleet");
                assert_eq!(tls.ca_file, ca);
            }
            other => panic!("{other:?}"),
        }
        assert!(s.database.describe().contains("verify-full"), "{s:?}");
        // The URL may come from the command line; the TLS keys still apply.
        let s = load(
            &format!("[database]\nsslmode = \"verify-full\"\n{ca_key}"),
            Flags {
                database_url: Some("host=db.example.org user=fleet".into()),
                ..Flags::default()
            },
        )
        .unwrap();
        assert!(matches!(s.database, Database::PostgresTls { .. }));

        let e = error(
            &format!("{url}sslmode = \"verify-full\"\n"),
            Flags::default(),
        );
        assert!(
            e.contains("fleet.toml, key `database.sslrootcert`") && e.contains("PEM CA"),
            "{e}"
        );
        let e = error(&format!("{url}{ca_key}"), Flags::default());
        assert!(
            e.contains("key `database.sslmode`") && e.contains("verify-full"),
            "{e}"
        );
    }

    #[test]
    fn database_tls_errors_name_the_key_the_file_and_what_to_write() {
        let url = "[database]\nurl = \"postgres://fleet@db.example.org/fleet\"\n";
        for weak in ["require", "prefer", "allow"] {
            let e = error(&format!("{url}sslmode = {weak:?}\n"), Flags::default());
            assert!(
                e.contains("fleet.toml, key `database.sslmode`")
                    && e.contains("without checking who the server is")
                    && e.contains("\"verify-full\" with database.sslrootcert"),
                "{e}"
            );
        }
        let e = error(&format!("{url}sslmode = \"verify-ca\"\n"), Flags::default());
        assert!(e.contains("host name") && e.contains("verify-full"), "{e}");
        let e = error(&format!("{url}sslmode = \"on\"\n"), Flags::default());
        assert!(e.contains("\"on\"") && e.contains("\"disable\""), "{e}");
        let e = error(&format!("{url}sslmode = true\n"), Flags::default());
        assert!(e.contains("line 3") && e.contains("string"), "{e}");

        // The CA file: missing, not PEM, no certificate in it.
        let dir = tempfile::tempdir().unwrap();
        let with_ca = |ca: &Path| {
            format!(
                "{url}sslmode = \"verify-full\"\nsslrootcert = {:?}\n",
                ca.display().to_string()
            )
        };
        let missing = dir.path().join("missing.pem");
        let e = error(&with_ca(&missing), Flags::default());
        assert!(
            e.contains("key `database.sslrootcert`")
                && e.contains("missing.pem")
                && e.contains("cannot read it"),
            "{e}"
        );
        let broken = dir.path().join("broken.pem");
        std::fs::write(
            &broken,
            "-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let e = error(&with_ca(&broken), Flags::default());
        assert!(
            e.contains("database.sslrootcert") && e.contains("broken.pem"),
            "{e}"
        );
        let text = dir.path().join("text.pem");
        std::fs::write(&text, "not a certificate\n").unwrap();
        let e = error(&with_ca(&text), Flags::default());
        assert!(
            e.contains("text.pem") && e.contains("holds no PEM certificate"),
            "{e}"
        );

        // TLS settings in the URL are refused, pointing to the file's keys.
        for url in [
            "postgres://fleet@db/fleet?sslmode=verify-full",
            "postgres://fleet@db/fleet?connect_timeout=5&sslrootcert=/ca.pem",
            "host=db user=fleet sslmode=require",
        ] {
            let e = error(&format!("[database]\nurl = {url:?}\n"), Flags::default());
            assert!(
                e.contains("key `database.url`")
                    && e.contains("in the URL is not read")
                    && e.contains("database.sslmode = \"verify-full\""),
                "{e}"
            );
        }
        // A Unix socket is not encrypted.
        std::fs::write(dir.path().join("ca.pem"), CA_PEM).unwrap();
        let e = error(
            &format!(
                "[database]\nurl = \"host=/run/postgresql user=fleet\"\nsslmode = \"verify-full\"\nsslrootcert = {:?}\n",
                dir.path().join("ca.pem").display().to_string()
            ),
            Flags::default(),
        );
        assert!(
            e.contains("database.url") && e.contains("Unix socket"),
            "{e}"
        );
        // Without a URL (SQLite) the keys mean nothing: said so.
        let e = error("[database]\nsslmode = \"verify-full\"\n", Flags::default());
        assert!(
            e.contains("key `database.sslmode`") && e.contains("no database.url"),
            "{e}"
        );
    }
}
