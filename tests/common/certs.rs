//! Test TLS certificates made with the `openssl` command, shared by the device crate's push
//! tests (`tests/push_mqtt.rs`) and the fleet collector's (`fleet/tests/tls.rs`): in `dir`,
//! `ca.pem`/`ca.key` (a test CA), `server.pem`/`server.key` (signed by it for IP 127.0.0.1) and
//! `other.pem` (an unrelated CA, for "foreign CA is refused" tests). Valid for two days.

use std::path::Path;
use std::process::{Command, Stdio};

fn openssl(dir: &Path, args: &[&str]) -> bool {
    Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Makes the certificates; false when the `openssl` command is missing or fails. The files a
/// broker reads are made world-readable (mosquitto may run as another user).
pub fn make(dir: &Path, ca_name: &str) -> bool {
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    let ca = |key: &str, pem: &str, cn: &str| {
        let subject = format!("/CN={cn}");
        openssl(
            dir,
            &[
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", pem,
                "-days", "2", "-subj", &subject,
            ],
        )
    };
    let made = ca("ca.key", "ca.pem", ca_name)
        && ca("other.key", "other.pem", "someone else")
        && openssl(
            dir,
            &[
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                "server.key",
                "-out",
                "server.csr",
                "-subj",
                "/CN=127.0.0.1",
            ],
        )
        && openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                "server.csr",
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                "server.pem",
                "-days",
                "2",
                "-extfile",
                "server.ext",
            ],
        );
    use std::os::unix::fs::PermissionsExt;
    for f in ["server.key", "server.pem", "ca.pem"] {
        let _ = std::fs::set_permissions(dir.join(f), std::fs::Permissions::from_mode(0o644));
    }
    made
}
