//! The JWT secret: from the configuration, or generated once into the data directory.

use std::{
    fs,
    io::{self, Write as _},
    os::unix::fs::OpenOptionsExt as _,
    path::Path,
};

use anyhow::{Context as _, bail};
use herald_core::auth::MIN_SECRET_LEN;
use rand::RngCore as _;

use crate::config::Config;

/// File name of the generated secret inside the data directory.
pub const FILE: &str = "jwt-secret";

/// The configured secret, else the one in `<data dir>/jwt-secret`, created (mode 0600) when
/// missing. Concurrent first starts agree on one secret: only one `create_new` can win.
pub fn load_or_generate(config: &Config) -> anyhow::Result<Vec<u8>> {
    if let Some(secret) = &config.jwt_secret.0 {
        return Ok(secret.expose().as_bytes().to_vec());
    }
    let dir = &config.data_dir.0;
    let path = dir.join(FILE);
    if let Some(secret) = read(&path)? {
        return Ok(secret);
    }
    crate::backends::create_private_dir(dir)?;
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    match fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&path) {
        Ok(mut file) => {
            file.write_all(hex.as_bytes())
                .and_then(|()| file.sync_all())
                .with_context(|| format!("writing {}", path.display()))?;
            tracing::warn!(
                path = %path.display(),
                "generated a JWT secret; set HERALD_JWT_SECRET to share one secret between instances"
            );
            Ok(hex.into_bytes())
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            read(&path)?.with_context(|| format!("{} vanished while starting", path.display()))
        }
        Err(e) => Err(e).with_context(|| format!("creating {}", path.display())),
    }
}

fn read(path: &Path) -> anyhow::Result<Option<Vec<u8>>> {
    match fs::read_to_string(path) {
        Ok(text) => {
            let secret = text.trim();
            if secret.len() < MIN_SECRET_LEN {
                bail!(
                    "{} holds a secret shorter than {MIN_SECRET_LEN} bytes; delete it or set HERALD_JWT_SECRET",
                    path.display()
                );
            }
            Ok(Some(secret.as_bytes().to_vec()))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}
