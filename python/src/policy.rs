//! Placement policies from Python arguments: `tier` (one tier or space
//! name, required; or a list, preferred in order) or `policy`
//! (`"bandwidth"`, `"latency"`, `"capacity"`), optionally near a NUMA node.

use mamba::{Policy, Target, Tier};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

/// A tier name (`hbm`) or a space name (`dram0`).
fn target(name: &str) -> Target {
    name.parse::<Tier>()
        .map_or_else(|_| Target::Named(name.to_owned()), Target::Tier)
}

/// The policy that the arguments describe (highest bandwidth by default).
///
/// # Errors
/// `ValueError` for both `tier` and `policy`, an empty tier list or an
/// unknown policy name; `TypeError` for a `tier` that is neither a string
/// nor a list of strings.
pub fn from_args(
    tier: Option<&Bound<'_, PyAny>>,
    policy: Option<&str>,
    near_node: Option<u32>,
) -> PyResult<Policy> {
    let chosen = match (tier, policy) {
        (Some(_), Some(_)) => {
            return Err(PyValueError::new_err("give a tier or a policy, not both"))
        }
        (Some(tier), None) => match tier.extract::<String>() {
            Ok(name) => Policy::require(target(&name)),
            Err(_) => {
                let names: Vec<String> = tier.extract()?;
                let mut chain = names.iter().map(|n| target(n));
                let first = chain
                    .next()
                    .ok_or_else(|| PyValueError::new_err("an empty list of tiers"))?;
                chain.fold(Policy::prefer(first), Policy::or)
            }
        },
        (None, Some("bandwidth")) | (None, None) => Policy::highest_bandwidth(),
        (None, Some("latency")) => Policy::lowest_latency(),
        (None, Some("capacity")) => Policy::largest_capacity(),
        (None, Some(other)) => {
            return Err(PyValueError::new_err(format!(
                "unknown policy {other:?} (expected bandwidth, latency or capacity)"
            )))
        }
    };
    Ok(match near_node {
        Some(node) => chosen.near_node(node),
        None => chosen,
    })
}
