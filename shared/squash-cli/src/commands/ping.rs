//! `squash ping`: does a store location take writes?

use super::{CliError, Result};

/// Runs `squash ping`.
pub fn run(location: &str, wait_s: f64) -> Result<()> {
    let store = squash_s3::open_store(location)?;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs_f64(wait_s.max(0.0));
    let probe = b"squash probe";
    loop {
        let tried = store
            .put(".squash-probe", probe)
            .and_then(|_| store.get(".squash-probe"));
        match tried {
            Ok(back) if back == probe => {
                println!("{} takes writes", store.describe());
                return Ok(());
            }
            Ok(_) => return Err(CliError::input(location, "probe object read back differently")),
            Err(e) if std::time::Instant::now() >= deadline => return Err(e.into()),
            Err(_) => std::thread::sleep(std::time::Duration::from_millis(200)),
        }
    }
}
