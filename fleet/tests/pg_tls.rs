//! The collector and PostgreSQL over TLS (`database.sslmode = "verify-full"`): a throwaway
//! cluster with `ssl = on` and a certificate for 127.0.0.1 made by the `openssl` command
//! (the test CA of the MQTT TLS tests). With the right CA the collector connects and stores;
//! a foreign CA, a host name the certificate does not list, and a server with TLS off are
//! each refused with a message naming the host, the CA file and what to check.

#[path = "../../tests/common/certs.rs"]
mod certs;
mod common;

use agecam_fleet::schema::parse;
use agecam_fleet::store::pg_tls::PgTls;
use agecam_fleet::store::{Database, Outcome};
use common::*;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// The test certificates, or None (skipped) without openssl.
fn make_certs() -> Option<tempfile::TempDir> {
    require("openssl", &["openssl"], "apt-get install openssl")?;
    let certs = shared_tempdir();
    assert!(
        certs::make(certs.path(), "fleet database test CA"),
        "openssl could not make the test certificates"
    );
    Some(certs)
}

fn verify_full(url: String, ca: &Path) -> Database {
    Database::PostgresTls {
        url,
        tls: PgTls {
            ca_file: ca.to_path_buf(),
            config: agecam_fleet::config::tls_config(ca).unwrap(),
        },
    }
}

/// The error opening `db` gives, as the user reads it.
fn refusal(db: &Database) -> String {
    match db.open() {
        Ok(_) => panic!("{} connected; it should have been refused", db.describe()),
        Err(e) => {
            eprintln!("refused: {e}");
            e.to_string()
        }
    }
}

fn interval(start: i64) -> agecam_fleet::schema::Interval {
    let payload = format!(
        r#"{{"id":"hall@{start}","unit_id":"hall","start":{start},"end":{},"uptime_s":900.0,"frames":100,"camera_faults":0,"cells":[{{"age_bucket":"25-34","gender":"female","visits":3}}],"suppressed_cells":0,"dwell_mean_s":4.0,"start_time":"{}","end_time":"{}"}}"#,
        start + 900,
        agecam_fleet::schema::rfc3339(start),
        agecam_fleet::schema::rfc3339(start + 900),
    );
    parse("agecam/hall/intervals", payload.as_bytes()).unwrap()
}

#[test]
fn verify_full_connects_with_the_right_ca_and_refuses_the_wrong_ca_and_name() {
    let Some(bin) = postgres_bin() else { return };
    let Some(certs) = make_certs() else { return };
    let d = certs.path();
    let pg = Postgres::start(&bin, false);
    pg.enable_tls(&d.join("server.pem"), &d.join("server.key"), true);
    let ca = d.join("ca.pem");

    // (a) The right CA and a certificate for 127.0.0.1: connects over TLS and stores.
    let db = verify_full(pg.url(), &ca);
    let mut store = db.open().unwrap_or_else(|e| panic!("{e}"));
    let start = 1_795_392_000;
    assert_eq!(
        store.record(&[(interval(start), start + 901)]).unwrap(),
        [Outcome::Stored]
    );
    let counts = store.counts().unwrap();
    assert_eq!((counts.units, counts.intervals, counts.cells), (1, 1, 1));
    assert!(store.healthy());
    drop(store);
    // The server takes no connection without TLS, so the one above was TLS.
    let e = refusal(&Database::Postgres(pg.url()));
    assert!(
        e.contains("cannot connect") && e.contains("no encryption"),
        "{e}"
    );

    // (b) A CA that did not sign the server's certificate.
    let other = d.join("other.pem");
    let e = refusal(&verify_full(pg.url(), &other));
    assert!(
        e.contains("TLS (database.sslmode = \"verify-full\") refused")
            && e.contains(
                "certificate for 127.0.0.1 is not signed by the CA in database.sslrootcert"
            )
            && e.contains(&other.display().to_string()),
        "{e}"
    );

    // (c) A host name the certificate does not list (it names IP 127.0.0.1 only); the
    // connection still goes to 127.0.0.1 (hostaddr), only the name checked differs.
    let url = format!(
        "host=db.example.org hostaddr=127.0.0.1 port={} user=fleet dbname=postgres",
        pg.port
    );
    let e = refusal(&verify_full(url, &ca));
    assert!(
        e.contains("certificate does not name db.example.org") && e.contains("subjectAltName"),
        "{e}"
    );
    // The same through "localhost": a name, not the address the certificate lists.
    let url = format!("postgres://fleet@localhost:{}/postgres", pg.port);
    let e = refusal(&verify_full(url, &ca));
    assert!(e.contains("does not name localhost"), "{e}");
}

#[test]
fn verify_full_against_a_server_with_tls_off_is_refused() {
    let Some(bin) = postgres_bin() else { return };
    let Some(certs) = make_certs() else { return };
    let pg = Postgres::start(&bin, false);
    let ca = certs.path().join("ca.pem");
    let e = refusal(&verify_full(pg.url(), &ca));
    assert!(
        e.contains(&format!("postgres://fleet@127.0.0.1:{}/postgres", pg.port))
            && e.contains("the server at 127.0.0.1 has TLS off")
            && e.contains("ssl = on"),
        "{e}"
    );
    // Nothing was sent in the clear instead: the default (disable) still connects.
    assert!(Database::Postgres(pg.url()).open().is_ok());
}

/// The collector binary with a fleet.toml: stores a unit's interval over TLS; with a foreign
/// CA it does not start and says why.
#[test]
fn the_collector_stores_over_tls_from_its_config_file() {
    let Some(bin) = postgres_bin() else { return };
    let Some(mosquitto) = mosquitto() else { return };
    let Some(certs) = make_certs() else { return };
    let d = certs.path();
    let pg = Postgres::start(&bin, false);
    pg.enable_tls(&d.join("server.pem"), &d.join("server.key"), true);
    let broker = Broker::start(&mosquitto);
    let dir = shared_tempdir();
    let config = |ca: &str| {
        let path = dir.path().join(format!("fleet-{ca}.toml"));
        std::fs::write(
            &path,
            format!(
                "[database]\nurl = {:?}\nsslmode = \"verify-full\"\nsslrootcert = {:?}\n",
                pg.url(),
                d.join(ca).display().to_string()
            ),
        )
        .unwrap();
        path.display().to_string()
    };

    let out = Command::new(env!("CARGO_BIN_EXE_agecam-fleet"))
        .args(["--config", &config("other.pem")])
        .args(["--broker-host", "127.0.0.1", "--broker-port"])
        .arg(broker.port.to_string())
        .args(["--listen", &format!("127.0.0.1:{}", free_port())])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "started with a foreign CA: {stderr}");
    assert!(
        stderr.contains("not signed by the CA") && stderr.contains("other.pem"),
        "{stderr}"
    );

    let good = config("ca.pem");
    let collector = Collector::start(dir.path(), broker.port, "fleet-tls", &["--config", &good]);
    let unit = Unit::new(dir.path(), "hall", broker.port);
    let start = day_start(1);
    unit.save(&[common::interval("hall", start, 4, 2)]);
    assert_eq!(unit.push(), 1);
    let mut client = postgres_over_tls(&pg, &d.join("ca.pem"));
    collector.wait("the interval lands", Duration::from_secs(30), || {
        pg_counts(&mut client).1 == 1
    });
    assert!(
        collector.log_text().contains("verify-full"),
        "{}",
        collector.log_text()
    );
}

/// A plain `postgres` client over the same TLS (the server takes nothing else).
fn postgres_over_tls(pg: &Postgres, ca: &Path) -> postgres::Client {
    let config: postgres::Config = pg.url().parse().unwrap();
    let mut config = config;
    config.ssl_mode(postgres::config::SslMode::Require);
    config
        .connect(agecam_fleet::store::pg_tls::MakeRustlsConnect(
            agecam_fleet::config::tls_config(ca).unwrap(),
        ))
        .unwrap()
}
