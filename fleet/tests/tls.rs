//! TLS and credentials, as production units and collector use them: mosquitto with a TLS
//! listener (certificates made by the `openssl` command) and a password file; a unit pushes
//! over TLS with its password (agecam's push code), the collector subscribes over TLS with
//! its own, and the interval lands. A collector with a wrong password says so in its log,
//! keeps retrying and stays up; one with a CA that did not sign the broker's certificate too.

#[path = "../../tests/common/certs.rs"]
mod certs;
mod common;

use common::*;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

#[test]
fn units_and_collector_over_tls_with_passwords() {
    let Some(mosquitto) = mosquitto() else { return };
    let Some(_) = require("openssl", &["openssl"], "apt-get install openssl") else {
        return;
    };
    let certs = shared_tempdir();
    let d = certs.path();
    assert!(
        certs::make(d, "fleet test CA"),
        "openssl could not make the test certificates"
    );
    let passwords = d.join("passwords");
    for (user, password) in [("kiosk-hall", "unit-secret"), ("fleet", "collector-secret")] {
        let mut c = Command::new("mosquitto_passwd");
        if passwords.exists() {
            c.arg("-b");
        } else {
            c.args(["-c", "-b"]);
        }
        assert!(c
            .arg(&passwords)
            .args([user, password])
            .status()
            .unwrap()
            .success());
    }
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&passwords, std::fs::Permissions::from_mode(0o644)).unwrap();
    let broker = Broker::start_with(&mosquitto, |port, _| {
        format!(
            "listener {port} 127.0.0.1\nallow_anonymous false\npassword_file {1}\n\
             cafile {0}/ca.pem\ncertfile {0}/server.pem\nkeyfile {0}/server.key\n",
            d.display(),
            passwords.display()
        )
    });
    let dir = shared_tempdir();
    let good = d.join("collector-password");
    std::fs::write(&good, "collector-secret\n").unwrap();
    let bad = d.join("wrong-password");
    std::fs::write(&bad, "guess\n").unwrap();
    let ca = d.join("ca.pem").display().to_string();
    let other = d.join("other.pem").display().to_string();
    let sqlite = dir.path().join("fleet.sqlite").display().to_string();
    let args = |ca: &str, password: &Path| -> Vec<String> {
        [
            "--sqlite",
            &sqlite,
            "--tls",
            "--ca-file",
            ca,
            "--username",
            "fleet",
            "--password-file",
            &password.display().to_string(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    };

    // A wrong password, then a foreign CA: logged, retried, never fatal.
    for (ca_file, password, expect) in [
        (ca.as_str(), bad.as_path(), "retrying"),
        (other.as_str(), good.as_path(), "retrying"),
    ] {
        let a = args(ca_file, password);
        let a: Vec<&str> = a.iter().map(|s| s.as_str()).collect();
        let mut c = Collector::spawn(dir.path(), broker.port, "fleet-tls", &a);
        wait_until("the refusal is logged", Duration::from_secs(20), || {
            c.log_text().contains(expect)
        });
        std::thread::sleep(Duration::from_millis(500));
        assert!(c.alive(), "{}", c.log_text());
        assert!(!c.log_text().contains("subscribed to"));
        assert!(!c.log_text().contains("collector-secret") && !c.log_text().contains("guess"));
    }

    // The right CA and password.
    let a = args(&ca, &good);
    let a: Vec<&str> = a.iter().map(|s| s.as_str()).collect();
    let collector = Collector::start(dir.path(), broker.port, "fleet-tls", &a);
    assert!(collector.log_text().contains("mqtts://fleet@127.0.0.1"));
    let mut unit = Unit::new(dir.path(), "hall", broker.port);
    unit.settings.tls = Some(agecam::push::tls_config(&d.join("ca.pem")).unwrap());
    unit.settings.username = Some("kiosk-hall".into());
    unit.settings.password = Some(b"unit-secret".to_vec());
    unit.save(&[interval("hall", day_start(1), 4, 6)]);
    assert_eq!(unit.push(), 1);
    let stored = || {
        rusqlite::Connection::open(dir.path().join("fleet.sqlite"))
            .and_then(|c| {
                c.query_row("SELECT sum(visits) FROM cells", [], |r| {
                    r.get::<_, Option<i64>>(0)
                })
            })
            .ok()
            .flatten()
    };
    wait_until("the interval is stored", Duration::from_secs(30), || {
        stored() == Some(10)
    });
}
