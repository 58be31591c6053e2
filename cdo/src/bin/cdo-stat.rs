//! `cdo-stat`: asks a running CDO pool manager for its counters.
//!
//! The manager is found like any client finds it: `CDO_POOL_SOCKET` and
//! `CDO_WORKFLOW_TOKEN` (the lines `cdo-pm` prints). Prints one JSON object:
//! the manager's counters plus the average rates since it started
//! (`offers_per_s`, `views_per_s`, `view_mib_per_s`); exits with status 1
//! and a message when the manager cannot be reached.

use cdo::ipc::client::{Client, ClientConfig};
use std::process::ExitCode;
use std::time::Duration;

fn main() -> ExitCode {
    let Some(config) = ClientConfig::from_env("cdo-stat") else {
        eprintln!(
            "cdo-stat: set CDO_POOL_SOCKET and CDO_WORKFLOW_TOKEN or CDO_WORKFLOW_TOKEN_FILE (cdo-pm prints them)"
        );
        return ExitCode::FAILURE;
    };
    let result = Client::connect(&config).and_then(|mut client| {
        let stats = client.stats()?;
        client.leave(Duration::from_secs(5))?;
        Ok(stats)
    });
    match result {
        Ok(stats) => {
            let mut json = serde_json::to_value(stats).expect("the counters serialise");
            let seconds = (stats.uptime_ms as f64 / 1e3).max(1e-3);
            json["offers_per_s"] = (stats.offers_total as f64 / seconds).into();
            json["views_per_s"] = (stats.views_total as f64 / seconds).into();
            json["view_mib_per_s"] =
                (stats.view_bytes_total as f64 / seconds / (1 << 20) as f64).into();
            println!("{json}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("cdo-stat: {e}");
            ExitCode::FAILURE
        }
    }
}
