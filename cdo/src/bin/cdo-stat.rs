//! `cdo-stat`: asks a running CDO pool for its counters.
//!
//! A pool manager is found like any client finds it: `CDO_POOL_SOCKET` and
//! `CDO_WORKFLOW_TOKEN` (the lines `cdo-pm` prints). A pool in an
//! application's own process is found through the socket it serves its
//! counters on, `CDO_STAT_SOCKET` (set for the application, and here),
//! which is asked first when set. Prints one JSON object: the pool's
//! counters plus the average rates since it started (`offers_per_s`,
//! `views_per_s`, `view_mib_per_s`); exits with status 1 and a message
//! when the pool cannot be reached.

use cdo::app::STAT_SOCKET_ENV;
use cdo::ipc::client::{Client, ClientConfig};
use serde_json::Value;
use std::io::Read;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

/// How long an in-process pool's answer may take.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(5);

fn main() -> ExitCode {
    let counters = match std::env::var_os(STAT_SOCKET_ENV).filter(|p| !p.is_empty()) {
        Some(path) => in_process(Path::new(&path)),
        None => from_manager(),
    };
    match counters {
        Ok(mut json) => {
            add_rates(&mut json);
            println!("{json}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("cdo-stat: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The counters an in-process pool serves at `path`.
fn in_process(path: &Path) -> Result<Value, String> {
    let mut line = String::new();
    UnixStream::connect(path)
        .and_then(|mut s| {
            s.set_read_timeout(Some(ANSWER_TIMEOUT))?;
            s.read_to_string(&mut line)
        })
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let json: Value = serde_json::from_str(&line)
        .map_err(|e| format!("{}: not an answer of a pool: {e}", path.display()))?;
    match json.get("error") {
        Some(error) => Err(format!("{}: {error}", path.display())),
        None => Ok(json),
    }
}

/// The counters of the pool manager the environment names.
fn from_manager() -> Result<Value, String> {
    let config = ClientConfig::from_env("cdo-stat").ok_or_else(|| {
        format!(
            "set CDO_POOL_SOCKET and CDO_WORKFLOW_TOKEN or CDO_WORKFLOW_TOKEN_FILE (cdo-pm prints them), or {STAT_SOCKET_ENV} for a pool in an application's process"
        )
    })?;
    let stats = Client::connect(&config)
        .and_then(|mut client| {
            let stats = client.stats()?;
            client.leave(Duration::from_secs(5))?;
            Ok(stats)
        })
        .map_err(|e| e.to_string())?;
    Ok(serde_json::to_value(stats).expect("the counters serialise"))
}

/// Adds the average rates since the pool started.
fn add_rates(json: &mut Value) {
    let count = |key: &str| json[key].as_u64().unwrap_or(0) as f64;
    let seconds = (count("uptime_ms") / 1e3).max(1e-3);
    let offers = count("offers_total") / seconds;
    let views = count("views_total") / seconds;
    let mib = count("view_bytes_total") / seconds / (1 << 20) as f64;
    json["offers_per_s"] = offers.into();
    json["views_per_s"] = views.into();
    json["view_mib_per_s"] = mib.into();
}
