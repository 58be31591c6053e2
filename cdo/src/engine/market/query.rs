//! Queries of the offers by their attributes, as [`Pool::offers`] answers
//! them in one process: the matching names in guided-I/O order.
//!
//! [`Pool::offers`]: crate::Pool::offers

use super::{Engine, Reply};
use crate::attrs::Attributes as Typed;
use crate::engine::rules::guided_io_order;
use crate::ipc::limits::fit_names;
use crate::ipc::wire::{ErrorCode, Msg};
use crate::selector::Selector;

impl Engine {
    /// The names on offer whose attributes match `selector`, by priority
    /// (output first), then name and version, from the `skip`-th match on:
    /// as many as fit in a frame.
    pub(super) fn query(&self, selector: &str, skip: u64) -> Reply {
        let selector =
            Selector::parse(selector).map_err(|e| (ErrorCode::BadSelector, e.to_string()))?;
        let mut found = Vec::new();
        self.registry.for_each(&mut |name, e| {
            if selector.matches(&e.view(name)) {
                // Checked when offered: they parse.
                let priority = Typed::from_flat(&e.attrs).unwrap_or_default().priority;
                found.push((priority, name.to_owned(), e.version));
            }
        });
        found.sort_by(|a, b| guided_io_order((a.0, &a.1, a.2), (b.0, &b.1, b.2)));
        let rest: Vec<String> = found
            .into_iter()
            .skip(usize::try_from(skip).unwrap_or(usize::MAX))
            .map(|(_, name, _)| name)
            .collect();
        let total = rest.len();
        let names = fit_names(rest);
        let more = names.len() < total;
        Ok(Some(Msg::Listed { names, more }))
    }
}
