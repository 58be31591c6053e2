//! Where the engine keeps offered objects, behind a small trait so that a
//! host may bring its own matching of names.

use super::rules::admits_offer;
use crate::attrs::{AttrSource, FlatView};
use crate::config::DuplicateOffers;
use crate::ipc::fasthash::FastMap;
use crate::value::Value;

use crate::ipc::wire::{Attributes, RequestId};

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
    /// The request of its producer that offered it: how the producer
    /// names it in a withdrawal ([`Msg::WithdrawOffer`](crate::ipc::wire::Msg::WithdrawOffer)).
    pub request: RequestId,
    /// Which version of its name it is: 0 for an offer of a name not on
    /// offer, one more than the newest on offer for a newer version
    /// ([`DuplicateOffers::Version`]). Selectors see it as `version`.
    pub version: u64,
}

impl Entry {
    /// The object offered as `name`, as a selector sees it.
    pub fn view<'a>(&'a self, name: &'a str) -> OfferView<'a> {
        OfferView {
            name,
            version: Some(self.version),
            attrs: &self.attrs,
        }
    }
}

/// An object of the manager as a selector sees it: its name, its flat
/// attributes and, once offered, the derived `version`. The manager
/// derives no `space` or `tier`: a memfd segment lies in no mamba space.
#[derive(Debug, Clone, Copy)]
pub struct OfferView<'a> {
    /// The object's name.
    pub name: &'a str,
    /// Its version, when it is an offer.
    pub version: Option<u64>,
    /// Its attributes.
    pub attrs: &'a Attributes,
}

impl AttrSource for OfferView<'_> {
    fn get(&self, key: &str) -> Option<Value> {
        match key {
            "version" => self.version.map(Value::UInt),
            _ => FlatView {
                name: self.name,
                attrs: self.attrs,
            }
            .get(key),
        }
    }
}

/// Offered objects by name.
pub trait Registry: Send {
    /// Adds `entry` under `name`; gives it back if the name is taken and
    /// the registry does not keep versions.
    fn insert(&mut self, name: String, entry: Entry) -> Result<(), Entry>;
    /// The object offered under `name` (the newest version).
    fn get(&self, name: &str) -> Option<&Entry>;
    /// The object `owner` offered under `name` (the one
    /// [`Registry::remove`] would remove).
    fn get_of(&self, name: &str, owner: ClientId) -> Option<&Entry>;
    /// The object numbered `object` offered under `name`, if it is still
    /// on offer.
    fn get_object(&self, name: &str, object: u64) -> Option<&Entry>;
    /// The object `owner` offered under `name` by its request `request`.
    fn get_offered_by(&self, name: &str, owner: ClientId, request: RequestId) -> Option<&Entry>;
    /// Removes and returns the object numbered `object` offered under
    /// `name`.
    fn remove(&mut self, name: &str, object: u64) -> Option<Entry>;
    /// Hands the object numbered `object`, offered under `name`, to `to`,
    /// keeping its place among the versions; false when it is not on
    /// offer.
    fn set_owner(&mut self, name: &str, object: u64, to: ClientId) -> bool;
    /// Names of the objects `owner` offered.
    fn names_of(&self, owner: ClientId) -> Vec<String>;
    /// Calls `f` on every offered object (every version) with its name.
    fn for_each(&self, f: &mut dyn FnMut(&str, &Entry));
    /// Number of offered objects.
    fn len(&self) -> usize;
    /// Whether nothing is offered.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The default [`Registry`]: exact name matching in a hash map; a second
/// offer of a name on offer is refused or kept as a newer version, as
/// configured (a newer version may come from the same client).
#[derive(Debug, Default)]
pub struct NameRegistry {
    /// Versions of each name.
    entries: FastMap<String, Versions>,
    duplicates: DuplicateOffers,
    len: usize,
}

impl NameRegistry {
    /// An empty registry treating second offers as `duplicates` says.
    pub fn new(duplicates: DuplicateOffers) -> Self {
        NameRegistry {
            duplicates,
            ..NameRegistry::default()
        }
    }
}

/// The versions of one name: the newest inline, so that a name offered
/// once (the common case) costs no allocation besides its entry.
#[derive(Debug)]
struct Versions {
    /// Older versions, oldest first.
    older: Vec<Entry>,
    newest: Entry,
}

impl Versions {
    /// Every version, oldest first.
    fn iter(&self) -> impl DoubleEndedIterator<Item = &Entry> {
        self.older.iter().chain(std::iter::once(&self.newest))
    }
}

impl NameRegistry {
    /// The newest version of `name` that `pick` accepts.
    fn newest_where(&self, name: &str, pick: impl Fn(&Entry) -> bool) -> Option<&Entry> {
        self.entries.get(name)?.iter().rev().find(|e| pick(e))
    }
}

impl Registry for NameRegistry {
    fn insert(&mut self, name: String, entry: Entry) -> Result<(), Entry> {
        use std::collections::hash_map::Entry as Slot;
        match self.entries.entry(name) {
            Slot::Vacant(v) => {
                v.insert(Versions {
                    older: Vec::new(),
                    newest: entry,
                });
            }
            Slot::Occupied(_) if !admits_offer(self.duplicates, true) => return Err(entry),
            Slot::Occupied(mut o) => {
                let versions = o.get_mut();
                let older = std::mem::replace(&mut versions.newest, entry);
                versions.older.push(older);
            }
        }
        self.len += 1;
        Ok(())
    }

    fn get(&self, name: &str) -> Option<&Entry> {
        self.entries.get(name).map(|v| &v.newest)
    }

    fn get_of(&self, name: &str, owner: ClientId) -> Option<&Entry> {
        self.newest_where(name, |e| e.owner == owner)
    }

    fn get_object(&self, name: &str, object: u64) -> Option<&Entry> {
        self.newest_where(name, |e| e.object == object)
    }

    fn get_offered_by(&self, name: &str, owner: ClientId, request: RequestId) -> Option<&Entry> {
        self.newest_where(name, |e| e.owner == owner && e.request == request)
    }

    fn remove(&mut self, name: &str, object: u64) -> Option<Entry> {
        let versions = self.entries.get_mut(name)?;
        let entry = if versions.newest.object == object {
            match versions.older.pop() {
                Some(older) => std::mem::replace(&mut versions.newest, older),
                None => self.entries.remove(name)?.newest,
            }
        } else {
            let i = versions.older.iter().rposition(|e| e.object == object)?;
            versions.older.remove(i)
        };
        self.len -= 1;
        Some(entry)
    }

    fn set_owner(&mut self, name: &str, object: u64, to: ClientId) -> bool {
        let Some(versions) = self.entries.get_mut(name) else {
            return false;
        };
        let newest = std::iter::once(&mut versions.newest);
        match versions
            .older
            .iter_mut()
            .chain(newest)
            .find(|e| e.object == object)
        {
            Some(e) => {
                e.owner = to;
                true
            }
            None => false,
        }
    }

    fn names_of(&self, owner: ClientId) -> Vec<String> {
        self.entries
            .iter()
            .filter(|(_, v)| v.iter().any(|e| e.owner == owner))
            .map(|(name, _)| name.clone())
            .collect()
    }

    fn for_each(&self, f: &mut dyn FnMut(&str, &Entry)) {
        for (name, versions) in &self.entries {
            versions.iter().for_each(|e| f(name, e));
        }
    }

    fn len(&self) -> usize {
        self.len
    }
}
