//! `pantau user`: console users in the configured database.

use std::io::{BufRead, IsTerminal};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use pantau_config::{Config, ConfigError};
use pantau_dashboard_api::auth::{upsert_user, Role};
use pantau_store::Store;

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Create a user, or change the role and password of an existing one. The password is read
    /// from the environment variable PANTAU_PASSWORD, asked for on the terminal (not echoed), or
    /// read as one line from standard input.
    Add {
        /// User name: letters, digits, '.', '-' or '_'.
        name: String,
        /// operator, dispatcher, planner or admin.
        #[arg(long, value_parser = ["operator", "dispatcher", "planner", "admin"])]
        role: String,
        /// An agency of `[agencies]` the user belongs to (repeat for several); without one the
        /// user sees every camera.
        #[arg(long = "agency")]
        agencies: Vec<String>,
        /// Configuration file whose [store] holds the users.
        #[arg(short, long, default_value = "config/pantau.toml")]
        config: PathBuf,
    },
}

pub fn run(cmd: Command) -> anyhow::Result<ExitCode> {
    super::init_logging("warn");
    let Command::Add {
        name,
        role,
        agencies,
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
    if let Some(bad) = agencies
        .iter()
        .find(|a| !valid.config.agencies.contains_key(a.as_str()))
    {
        let known: Vec<&str> = valid.config.agencies.keys().map(String::as_str).collect();
        eprintln!(
            "{}: --agency {bad} is not an agency of [agencies] (there: {})",
            config.display(),
            if known.is_empty() {
                "none".to_string()
            } else {
                known.join(", ")
            }
        );
        return Ok(ExitCode::FAILURE);
    }
    let Some((url, schema)) = pantau_node::store_target(&valid) else {
        eprintln!(
            "{}: users live in the database; configure [store] first",
            config.display()
        );
        return Ok(ExitCode::FAILURE);
    };
    let password = match std::env::var("PANTAU_PASSWORD") {
        Ok(p) => p,
        Err(_) => read_password(&name)?,
    };
    let role = Role::parse(&role).context("role")?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let store = Store::connect(&url, &schema)
            .await
            .context("cannot reach the database of [store]")?;
        match upsert_user(&store, &name, role, &password, &agencies).await {
            Ok(true) => println!("user {name} created with role {}", role.as_str()),
            Ok(false) => println!(
                "user {name} updated: role {}, new password, enabled; its sessions ended",
                role.as_str()
            ),
            Err(e) => anyhow::bail!("{}", e.message),
        }
        anyhow::Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
}

fn read_password(name: &str) -> anyhow::Result<String> {
    let stdin = std::io::stdin();
    let p = if stdin.is_terminal() {
        // Not echoed.
        rpassword::prompt_password(format!("password for {name} (10+ characters): "))?
    } else {
        let mut line = String::new();
        stdin.lock().read_line(&mut line)?;
        line.trim_end_matches(['\r', '\n']).to_string()
    };
    anyhow::ensure!(!p.is_empty(), "no password given");
    Ok(p)
}
