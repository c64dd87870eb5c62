//! `pantau evidence verify DIR_OR_ZIP [--key KEY]`: checks a clip's hash and signature and
//! prints what it checked; `pantau evidence key --config F`: the node's public key (to give
//! investigators, or to pin with `--key`).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Subcommand;

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check an evidence clip: a clip folder on the node or an exported zip. Exits 0 when the
    /// video matches the manifest and the manifest's signature is valid for the key given;
    /// 2 when it is valid only for the key that came with the clip (no --key); 1 otherwise.
    Verify {
        /// Clip folder (holding clip.mp4, manifest.json, manifest.sig) or exported zip.
        path: PathBuf,
        /// The node's public key (base64, as GET /api/v1/evidence/key gives it, or a file
        /// holding it). Without it the key in the export is used, which only shows the files
        /// belong together.
        #[arg(long)]
        key: Option<String>,
    },
    /// Print this node's evidence public key (created at the node's first start).
    Key {
        /// Configuration file (TOML).
        #[arg(short, long, default_value = "config/pantau.toml")]
        config: PathBuf,
    },
}

pub fn run(cmd: Command) -> anyhow::Result<ExitCode> {
    match cmd {
        Command::Verify { path, key } => {
            // A key may be given as text or as a file holding it.
            let key = match key {
                Some(k) if std::path::Path::new(&k).is_file() => Some(
                    std::fs::read_to_string(&k).map_err(|e| anyhow::anyhow!("--key {k}: {e}"))?,
                ),
                other => other,
            };
            let verdict = pantau_evidence::verify(&path, key.as_deref())
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            print!("{}", pantau_evidence::verify::report(&verdict));
            Ok(match (verdict.passed(), verdict.key_from_export) {
                (true, false) => ExitCode::SUCCESS,
                // Consistent, but checked only with the key that came with it.
                (true, true) => ExitCode::from(2),
                (false, _) => ExitCode::FAILURE,
            })
        }
        Command::Key { config } => {
            let valid = match pantau_config::Config::load(&config) {
                Ok(v) => v,
                Err(e) => anyhow::bail!("{e}"),
            };
            let base = config
                .parent()
                .map(std::path::Path::to_path_buf)
                .unwrap_or_default();
            let file = base.join(&valid.config.evidence.key_file);
            if !file.exists() {
                anyhow::bail!(
                    "{}: no key yet; the node creates it at its first start with evidence on",
                    file.display()
                );
            }
            let (key, _) = pantau_evidence::NodeKey::load_or_create(&file)
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            println!("algorithm  Ed25519");
            println!("key id     {}", key.id());
            println!("public key {}", key.public_base64());
            Ok(ExitCode::SUCCESS)
        }
    }
}
