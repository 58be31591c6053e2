//! Where the pool manager keeps offered objects, behind a small trait so the
//! in-process CDO pool can later provide the matching core.

use crate::ipc::fasthash::FastMap;

use super::wire::Attributes;

/// Identifier of a joined client.
pub type ClientId = u64;

/// One offered object as the manager sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// The client that offered it.
    pub owner: ClientId,
    /// Its size in bytes.
    pub size: u64,
    /// The manager's identifier of the segment holding it.
    pub segment: u64,
    /// Its offset in that segment.
    pub offset: u64,
    /// Its attributes.
    pub attrs: Attributes,
    /// The manager's identifier of this offer (unique for the manager's life).
    pub object: u64,
}

/// Offered objects by name.
pub trait Registry: Send {
    /// Adds `entry` under `name`; gives it back if the name is taken.
    fn insert(&mut self, name: String, entry: Entry) -> Result<(), Entry>;
    /// The object offered under `name`.
    fn get(&self, name: &str) -> Option<&Entry>;
    /// Removes and returns the object offered under `name`.
    fn remove(&mut self, name: &str) -> Option<Entry>;
    /// Names of the objects `owner` offered.
    fn names_of(&self, owner: ClientId) -> Vec<String>;
    /// Number of offered objects.
    fn len(&self) -> usize;
    /// Whether nothing is offered.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The default [`Registry`]: exact name matching in a hash map.
#[derive(Debug, Default)]
pub struct NameRegistry {
    entries: FastMap<String, Entry>,
}

impl Registry for NameRegistry {
    fn insert(&mut self, name: String, entry: Entry) -> Result<(), Entry> {
        match self.entries.entry(name) {
            std::collections::hash_map::Entry::Occupied(_) => Err(entry),
            std::collections::hash_map::Entry::Vacant(v) => {
                v.insert(entry);
                Ok(())
            }
        }
    }

    fn get(&self, name: &str) -> Option<&Entry> {
        self.entries.get(name)
    }

    fn remove(&mut self, name: &str) -> Option<Entry> {
        self.entries.remove(name)
    }

    fn names_of(&self, owner: ClientId) -> Vec<String> {
        self.entries
            .iter()
            .filter(|(_, e)| e.owner == owner)
            .map(|(name, _)| name.clone())
            .collect()
    }

    fn len(&self) -> usize {
        self.entries.len()
    }
}
