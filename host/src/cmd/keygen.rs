//! `keygen`: a minisign key pair for signing model sets (docs/model-signing.md).

use anyhow::{bail, Context};
use clap::Parser;
use std::path::PathBuf;

#[derive(Debug, Parser)]
pub struct Args {
    /// Where to write the secret key (refused if the file exists). Keep it off the kiosks and
    /// out of the repository.
    #[arg(long, value_name = "FILE")]
    pub secret_key: PathBuf,
    /// Where to write the public key: give it to the units (model.public_keys), or, for the
    /// project's key, commit it as deploy/agecam-models.pub.
    #[arg(long, value_name = "FILE")]
    pub public_key: PathBuf,
    /// Leave the secret key without a password (for throwaway test keys only). Otherwise the
    /// password is read from AGECAM_SIGNING_PASSWORD, or asked for.
    #[arg(long)]
    pub unencrypted: bool,
}

pub fn run(a: &Args) -> anyhow::Result<()> {
    for path in [&a.secret_key, &a.public_key] {
        if path.exists() {
            bail!(
                "{} exists already; keygen never overwrites a key",
                path.display()
            );
        }
    }
    let pair = if a.unencrypted {
        minisign::KeyPair::generate_unencrypted_keypair()
    } else {
        minisign::KeyPair::generate_encrypted_keypair(std::env::var("AGECAM_SIGNING_PASSWORD").ok())
    }
    .context("cannot make a key pair")?;
    let public = pair
        .pk
        .to_box()
        .context("cannot encode the public key")?
        .to_string();
    let secret = pair
        .sk
        .to_box(Some("agecam model-signing secret key"))
        .context("cannot encode the secret key")?
        .to_string();
    write_new(&a.secret_key, &secret, 0o600)?;
    write_new(&a.public_key, &public, 0o644)?;
    let key = agecam::model::signature::TrustedKey::parse(&public, "new key")
        .map_err(|p| anyhow::anyhow!("the new public key {p}"))?;
    println!(
        "key ID {}: secret key {} (mode 0600), public key {}",
        key.id,
        a.secret_key.display(),
        a.public_key.display()
    );
    Ok(())
}

/// Writes a file that must not exist yet, with `mode`.
fn write_new(path: &std::path::Path, text: &str, mode: u32) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    file.write_all(text.as_bytes())
        .and_then(|()| file.sync_all())
        .with_context(|| format!("cannot write {}", path.display()))
}
