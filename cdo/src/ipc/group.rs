//! CDO groups across processes: a group `g` is its members `g/<member>`,
//! offered first, and a zero-length manifest object `g` whose `members`
//! attribute lists them, offered once every member is — so a consumer that
//! demands the manifest sees the group only whole. A consumer then demands
//! the members one at a time ([`GroupReader::next`]), so a group larger
//! than its memory can be read in a loop that drops each view before the
//! next.
//!
//! ```no_run
//! use cdo::ipc::client::{Client, ClientConfig};
//! use cdo::ipc::group::{offer_group, GroupReader};
//! use cdo::ipc::wire::Attributes;
//! use std::time::Duration;
//!
//! let config = ClientConfig::from_env("example").expect("a pool manager");
//! let mut producer = Client::connect(&config)?;
//! let offered = offer_group(&mut producer, "run/step/10", &[("rho", b"..", Attributes::new())], Attributes::new())?;
//!
//! let mut consumer = Client::connect(&config)?;
//! let mut group = GroupReader::demand(&mut consumer, "run/step/10", Duration::from_secs(5))?;
//! while let Some(view) = group.next(&mut consumer, Duration::from_secs(5))? {
//!     println!("{}: {} bytes", view.name(), view.len());
//! }
//! consumer.flush()?;
//! offered.withdraw(&mut producer)?;
//! # Ok::<(), cdo::ipc::client::ClientError>(())
//! ```

use std::time::Duration;

use crate::ipc::client::{Client, ClientError, View};
use crate::ipc::wire::{Attributes, ErrorCode};

pub use crate::engine::names::member_name;
use crate::engine::names::{members_listed, members_value, MEMBERS};

/// A group this client offered.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use = "withdraw the group once consumers are done"]
pub struct OfferedGroup {
    /// The group's (manifest's) name.
    pub name: String,
    /// Full names of its members.
    pub members: Vec<String>,
}

impl OfferedGroup {
    /// Withdraws the manifest, then the members (waiting, as every
    /// withdrawal, until no consumer views them).
    ///
    /// # Errors
    /// The withdrawals' errors.
    pub fn withdraw(self, client: &mut Client) -> Result<(), ClientError> {
        client.withdraw(&self.name)?;
        let names: Vec<&str> = self.members.iter().map(String::as_str).collect();
        client.withdraw_many(&names)
    }
}

/// Offers `members` (member name, bytes, attributes) as group `group`, then
/// its manifest with `attrs`.
///
/// # Errors
/// [`ErrorCode::DuplicateName`] for a member listed twice, before anything
/// is offered (as an in-process group refuses to declare it twice); else
/// the first member offer that failed (the manifest is then not offered,
/// and the members offered so far are withdrawn).
pub fn offer_group(
    client: &mut Client,
    group: &str,
    members: &[(&str, &[u8], Attributes)],
    mut attrs: Attributes,
) -> Result<OfferedGroup, ClientError> {
    let names: Vec<String> = members
        .iter()
        .map(|(m, _, _)| member_name(group, m))
        .collect();
    if let Some((i, _)) = names
        .iter()
        .enumerate()
        .find(|(i, n)| names[..*i].contains(n))
    {
        return Err(ClientError::Pool {
            code: ErrorCode::DuplicateName,
            text: format!("group {group}: member {:?} listed twice", members[i].0),
        });
    }
    let mut ids = Vec::with_capacity(members.len());
    let mut failed = None;
    for (name, (_, bytes, a)) in names.iter().zip(members) {
        let submitted = client.submit_offer(name, bytes.len() as u64, a.clone(), |dst| {
            dst.copy_from_slice(bytes)
        });
        match submitted {
            Ok(id) => ids.push((id, name.as_str())),
            Err(e) => {
                failed = Some(e);
                break;
            }
        }
    }
    let mut offered = Vec::new();
    for (id, name) in ids {
        match client.wait(id, Some(client.op_timeout())) {
            Ok(_) => offered.push(name),
            Err(e) => failed = failed.or(Some(e)),
        }
    }
    if let Some(e) = failed {
        client.withdraw_many(&offered)?;
        return Err(e);
    }
    attrs.insert(MEMBERS.into(), members_value(&names));
    client.offer(group, &[], attrs)?;
    Ok(OfferedGroup {
        name: group.to_owned(),
        members: names,
    })
}

fn members_of(group: &str, attrs: Option<&Attributes>) -> Result<Vec<String>, ClientError> {
    let not_a_group = || ClientError::Pool {
        code: ErrorCode::UnknownName,
        text: format!("{group} is not an offered group manifest"),
    };
    attrs
        .and_then(|a| a.get(MEMBERS))
        .and_then(members_listed)
        .ok_or_else(not_a_group)
}

/// A demanded group, read member by member.
#[derive(Debug)]
pub struct GroupReader {
    manifest: View,
    members: Vec<String>,
    next: usize,
}

impl GroupReader {
    /// Demands the manifest of `group` (waiting up to `timeout`).
    ///
    /// # Errors
    /// The demand's errors; `UnknownName` when the object is no manifest.
    pub fn demand(
        client: &mut Client,
        group: &str,
        timeout: Duration,
    ) -> Result<Self, ClientError> {
        let manifest = client.demand(group, timeout)?;
        let members = members_of(group, Some(manifest.attrs()))?;
        Ok(GroupReader {
            manifest,
            members,
            next: 0,
        })
    }

    /// The manifest's attributes.
    pub fn attrs(&self) -> &Attributes {
        self.manifest.attrs()
    }

    /// Full names of the members, in offer order.
    pub fn members(&self) -> &[String] {
        &self.members
    }

    /// Demands the next member; `None` after the last.
    ///
    /// # Errors
    /// The demand's errors.
    pub fn next(
        &mut self,
        client: &mut Client,
        timeout: Duration,
    ) -> Result<Option<View>, ClientError> {
        let Some(name) = self.members.get(self.next) else {
            return Ok(None);
        };
        let view = client.demand(name, timeout)?;
        self.next += 1;
        Ok(Some(view))
    }

    /// Demands every remaining member in one round trip.
    ///
    /// # Errors
    /// The demands' errors.
    pub fn all(mut self, client: &mut Client, timeout: Duration) -> Result<Vec<View>, ClientError> {
        let names: Vec<&str> = self.members[self.next..]
            .iter()
            .map(String::as_str)
            .collect();
        let views = client.demand_many(&names, timeout)?;
        self.next = self.members.len();
        Ok(views)
    }
}
