//! `cdo-stat`: asks a running CDO pool manager for its counters.
//!
//! The manager is found like any client finds it: `CDO_POOL_SOCKET` and
//! `CDO_WORKFLOW_TOKEN` (the lines `cdo-pm` prints). Prints one JSON object;
//! exits with status 1 and a message when the manager cannot be reached.

use cdo::ipc::client::{Client, ClientConfig};
use std::process::ExitCode;
use std::time::Duration;

fn main() -> ExitCode {
    let Some(config) = ClientConfig::from_env("cdo-stat") else {
        eprintln!("cdo-stat: set CDO_POOL_SOCKET and CDO_WORKFLOW_TOKEN (cdo-pm prints them)");
        return ExitCode::FAILURE;
    };
    let result = Client::connect(&config).and_then(|mut client| {
        let stats = client.stats()?;
        client.leave(Duration::from_secs(5))?;
        Ok(stats)
    });
    match result {
        Ok(stats) => {
            println!(
                "{}",
                serde_json::to_string(&stats).expect("the counters serialise")
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("cdo-stat: {e}");
            ExitCode::FAILURE
        }
    }
}
