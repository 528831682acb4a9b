//! `paycode serve [--config FILE] [--listen ADDR] [--log-format text|json]`:
//! the service, on the configuration file or on the embedded defaults
//! (`Config::embedded`), through the one serve path.

use std::net::SocketAddr;
use std::path::PathBuf;

use paycode::config::{Config, LogFormat};

/// The arguments of `paycode serve`.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    #[arg(long)]
    config: Option<PathBuf>,
    /// Where to listen (overrides `[server] listen`; default 127.0.0.1:8080).
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// `text` or `json` log lines on standard error (overrides `[server] log_format`).
    #[arg(long, value_parser = ["text", "json"])]
    log_format: Option<String>,
}

/// Runs the service until Ctrl-C or SIGTERM.
pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    let mut config = if let Some(config) = super::load_config(args.config.as_deref())? {
        println!(
            "paycode: serving with {}:",
            args.config.unwrap_or_default().display()
        );
        config
    } else {
        println!("paycode: no --config given, running on the embedded defaults:");
        Config::embedded()
    };
    if let Some(listen) = args.listen {
        config.server.listen = listen;
    }
    if let Some(format) = args.log_format {
        config.server.log_format = match format.as_str() {
            "json" => LogFormat::Json,
            _ => LogFormat::Text,
        };
    }
    paycode::service::serve(config).await
}
