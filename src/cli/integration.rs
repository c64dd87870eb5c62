//! `pantau integration`: integrations (citizen apps) that send reports, in the configured
//! database.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use pantau_config::{Config, ConfigError};
use pantau_dashboard_api::reports::add_integration;
use pantau_store::Store;

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Create an integration and print its key and callback secret. They are shown this once:
    /// the database keeps only the key's SHA-256.
    Add {
        /// Integration name: the `source` of its reports (lowercase letters, digits, '-', '_').
        name: String,
        /// Where status changes of its reports are POSTed (http or https), signed with the
        /// callback secret.
        #[arg(long)]
        callback_url: Option<String>,
        /// Configuration file whose [store] holds the integrations.
        #[arg(short, long, default_value = "config/pantau.toml")]
        config: PathBuf,
    },
}

pub fn run(cmd: Command) -> anyhow::Result<ExitCode> {
    super::init_logging("warn");
    let Command::Add {
        name,
        callback_url,
        config,
    } = cmd;
    let valid = match Config::load(&config) {
        Ok(v) => v,
        Err(ConfigError::Invalid { path, issues }) => {
            eprintln!("{}: {issues}", path.display());
            return Ok(ExitCode::FAILURE);
        }
        Err(e) => return Err(e.into()),
    };
    let Some((url, schema)) = pantau_node::store_target(&valid) else {
        eprintln!(
            "{}: integrations live in the database; configure [store] first",
            config.display()
        );
        return Ok(ExitCode::FAILURE);
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let store = Store::connect(&url, &schema)
            .await
            .context("cannot reach the database of [store]")?;
        let created = add_integration(&store, &name, callback_url.as_deref(), "pantau")
            .await
            .map_err(|e| anyhow::anyhow!("{}", e.message))?;
        println!("integration {} created", created.name);
        println!("key (send as `Authorization: Bearer <key>` to POST /api/v1/reports):");
        println!("  {}", created.key);
        println!("callback secret (HMAC-SHA256 key of X-Pantau-Signature):");
        println!("  {}", created.callback_secret);
        if let Some(u) = &created.callback_url {
            println!("callbacks go to {u}");
        }
        println!("Both are shown only now; store them in the app's configuration.");
        anyhow::Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
}
