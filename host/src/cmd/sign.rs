//! `sign`: signs a model folder's `manifest.json` (after checking every file's sha256 in it)
//! with a minisign secret key, and optionally packs the folder as a bundle for
//! `agecam models install` (docs/model-signing.md).

use agecam::model::bundle;
use agecam::model::manifest::{parse_entries, sha256_file, MANIFEST_FILE};
use agecam::model::signature::{TrustedKey, TrustedKeys, SIGNATURE_FILE, UNTRUSTED_COMMENT};
use anyhow::{bail, Context};
use clap::Parser;
use std::path::PathBuf;

#[derive(Debug, Parser)]
pub struct Args {
    /// The model folder (manifest.json and the files it lists).
    #[arg(value_name = "DIR")]
    pub dir: PathBuf,
    /// The minisign secret key (agecam-host keygen). An encrypted key's password is read from
    /// AGECAM_SIGNING_PASSWORD, or asked for.
    #[arg(long, value_name = "FILE")]
    pub secret_key: PathBuf,
    /// Its public key, to check the new signature with before it is written.
    #[arg(long, value_name = "FILE")]
    pub public_key: PathBuf,
    /// Also write the signed set as a bundle file for `agecam models install`.
    #[arg(long, value_name = "FILE")]
    pub bundle: Option<PathBuf>,
}

pub fn run(a: &Args) -> anyhow::Result<()> {
    let manifest_file = a.dir.join(MANIFEST_FILE);
    let manifest = std::fs::read(&manifest_file)
        .with_context(|| format!("cannot read {}", manifest_file.display()))?;
    let entries = parse_entries(&manifest).with_context(|| manifest_file.display().to_string())?;
    bundle::listed_files(&entries)
        .map_err(|p| anyhow::anyhow!("{}: {p}", manifest_file.display()))?;
    // Sign only what is true: every listed file as the manifest says.
    for entry in &entries {
        let path = a.dir.join(&entry.file);
        let actual =
            sha256_file(&path).with_context(|| format!("cannot read {}", path.display()))?;
        if !actual.eq_ignore_ascii_case(&entry.sha256) {
            bail!(
                "{}: sha256 is {actual} but {} says {}; fix the manifest before signing it",
                path.display(),
                manifest_file.display(),
                entry.sha256
            );
        }
    }
    let secret_text = std::fs::read_to_string(&a.secret_key)
        .with_context(|| format!("cannot read the secret key {}", a.secret_key.display()))?;
    let secret = match minisign::SecretKeyBox::from_string(&secret_text)
        .and_then(|b| b.into_unencrypted_secret_key())
    {
        Ok(key) => key,
        Err(_) => minisign::SecretKeyBox::from_string(&secret_text)
            .and_then(|b| b.into_secret_key(std::env::var("AGECAM_SIGNING_PASSWORD").ok()))
            .with_context(|| format!("cannot open the secret key {}", a.secret_key.display()))?,
    };
    let public_text = std::fs::read_to_string(&a.public_key)
        .with_context(|| format!("cannot read the public key {}", a.public_key.display()))?;
    let public = minisign::PublicKeyBox::from_string(&public_text)
        .and_then(|b| b.into_public_key())
        .with_context(|| format!("{} is not a minisign public key", a.public_key.display()))?;
    let comment = format!("file:{MANIFEST_FILE}\tset:{}", bundle::set_id(&manifest));
    let signature = minisign::sign(
        Some(&public),
        &secret,
        &manifest[..],
        Some(&comment),
        Some(UNTRUSTED_COMMENT.trim_start_matches("untrusted comment: ")),
    )
    .with_context(|| {
        format!(
            "{} does not sign for {}",
            a.secret_key.display(),
            a.public_key.display()
        )
    })?
    .to_string();
    // Check it as a unit will, before anything is written.
    let key = TrustedKey::parse(&public_text, &a.public_key.display().to_string())
        .map_err(|p| anyhow::anyhow!("{} {p}", a.public_key.display()))?;
    let signature_file = a.dir.join(SIGNATURE_FILE);
    TrustedKeys::only(key.clone()).verify(
        &manifest_file,
        &manifest,
        &signature_file,
        signature.as_bytes(),
    )?;
    std::fs::write(&signature_file, &signature)
        .with_context(|| format!("cannot write {}", signature_file.display()))?;
    println!(
        "signed {} with key ID {}: {}",
        manifest_file.display(),
        key.id,
        signature_file.display()
    );
    if let Some(out) = &a.bundle {
        let bytes = bundle::pack(&a.dir)?;
        bundle::read(&bytes, out, &TrustedKeys::only(key))?;
        std::fs::write(out, &bytes).with_context(|| format!("cannot write {}", out.display()))?;
        println!(
            "bundle {} ({} bytes, model set {}): install it on a unit with `agecam models install`",
            out.display(),
            bytes.len(),
            bundle::set_id(&manifest)
        );
    }
    Ok(())
}
