//! Setting a handle's attributes.

use super::Cdo;
use crate::attrs::{self, Attributes, ElementType, Layout, Order, Place, Priority};
use crate::error::Result;
use crate::lifecycle::Op;
use crate::value::Value;
use std::time::Duration;

impl Cdo<'_> {
    /// Sets an attribute by key (built-in or `namespace.key`); returns
    /// false when the pool's configuration dropped an unknown key.
    ///
    /// # Errors
    /// [`Error::InvalidState`](crate::Error::InvalidState) after the seal, [`Error::UnknownAttribute`](crate::Error::UnknownAttribute),
    /// [`Error::TypeMismatch`](crate::Error::TypeMismatch), [`Error::ReadOnlyAttribute`](crate::Error::ReadOnlyAttribute).
    pub fn set(&mut self, key: &str, value: impl Into<Value>) -> Result<bool> {
        self.check(Op::SetAttribute)?;
        let schema = (&self.pool.schema, self.pool.config.unknown_attributes);
        match attrs::set_attribute(self.attributes(), key, value.into(), Some(schema))? {
            None => Ok(false),
            Some(new) => self.replace_attributes(new).map(|()| true),
        }
    }

    /// Sets the size in bytes.
    ///
    /// # Errors
    /// As [`Cdo::set`]; [`Error::Inconsistent`](crate::Error::Inconsistent) with attached data.
    pub fn set_size(&mut self, size: u64) -> Result<()> {
        self.modify(|a| {
            Ok(Attributes {
                size: Some(size),
                ..a.clone()
            })
        })
    }

    /// Sets the element type.
    ///
    /// # Errors
    /// As [`Cdo::set`].
    pub fn set_element_type(&mut self, t: ElementType) -> Result<()> {
        self.modify(|a| {
            Ok(Attributes {
                element_type: Some(t),
                ..a.clone()
            })
        })
    }

    /// Sets shape and order.
    ///
    /// # Errors
    /// As [`Cdo::set`].
    pub fn set_layout(&mut self, layout: Layout) -> Result<()> {
        self.modify(|a| {
            Ok(Attributes {
                layout: Some(layout),
                ..a.clone()
            })
        })
    }

    /// Sets the minimum availability after the offer.
    ///
    /// # Errors
    /// As [`Cdo::set`].
    pub fn set_lifetime(&mut self, lifetime: Duration) -> Result<()> {
        self.modify(|a| {
            Ok(Attributes {
                lifetime,
                ..a.clone()
            })
        })
    }

    /// Sets the guided-I/O priority.
    ///
    /// # Errors
    /// As [`Cdo::set`].
    pub fn set_priority(&mut self, priority: Priority) -> Result<()> {
        self.modify(|a| {
            Ok(Attributes {
                priority,
                ..a.clone()
            })
        })
    }

    /// Sets the persistence wish.
    ///
    /// # Errors
    /// As [`Cdo::set`].
    pub fn set_persist(&mut self, persist: bool) -> Result<()> {
        self.modify(|a| {
            Ok(Attributes {
                persist,
                ..a.clone()
            })
        })
    }

    /// Consumer: where the data should be delivered.
    ///
    /// # Errors
    /// As [`Cdo::set`].
    pub fn want_place(&mut self, place: Place) -> Result<()> {
        self.modify(|a| {
            Ok(Attributes {
                wanted_place: Some(place),
                ..a.clone()
            })
        })
    }

    /// Consumer: the storage order the data should be delivered in.
    ///
    /// # Errors
    /// As [`Cdo::set`].
    pub fn want_order(&mut self, order: Order) -> Result<()> {
        self.modify(|a| {
            Ok(Attributes {
                wanted_order: Some(order),
                ..a.clone()
            })
        })
    }

    pub(crate) fn set_members(&mut self, members: Vec<String>) -> Result<()> {
        self.modify(|a| {
            Ok(Attributes {
                members,
                ..a.clone()
            })
        })
    }
}
