//! The manager's open connections: how many, which have joined, and which
//! to close when too many wait for their JOIN.

use std::collections::BTreeMap;
use std::net::Shutdown;
use std::os::unix::net::UnixStream;

use super::Limits;

struct Conn {
    sock: UnixStream,
    joined: bool,
}

/// Open connections by id (ids grow, so the first pending one is the
/// oldest).
#[derive(Default)]
pub struct Conns {
    open: BTreeMap<u64, Conn>,
    pending: usize,
    next: u64,
}

impl Conns {
    /// Admits a new connection (`sock`, a clone to shut it down with):
    /// its id, or `None` when `limits` allow no more. When too many
    /// connections have not joined, the oldest of them is closed to make
    /// room: idle connections cannot keep others out.
    pub fn admit(&mut self, sock: UnixStream, limits: &Limits) -> Option<u64> {
        if self.pending >= limits.pending || self.open.len() >= limits.connections {
            self.close_oldest_pending();
        }
        if self.open.len() >= limits.connections {
            return None;
        }
        self.next += 1;
        self.open.insert(
            self.next,
            Conn {
                sock,
                joined: false,
            },
        );
        self.pending += 1;
        Some(self.next)
    }

    fn close_oldest_pending(&mut self) {
        let Some(id) = self.open.iter().find(|(_, c)| !c.joined).map(|(&id, _)| id) else {
            return;
        };
        if let Some(c) = self.open.remove(&id) {
            let _ = c.sock.shutdown(Shutdown::Both);
            self.pending -= 1;
        }
    }

    /// Marks connection `id` joined; `false` when it was closed meanwhile.
    pub fn joined(&mut self, id: u64) -> bool {
        match self.open.get_mut(&id) {
            Some(c) if !c.joined => {
                c.joined = true;
                self.pending -= 1;
                true
            }
            Some(_) => true,
            None => false,
        }
    }

    /// Forgets connection `id` (it ended).
    pub fn remove(&mut self, id: u64) {
        if let Some(c) = self.open.remove(&id) {
            if !c.joined {
                self.pending -= 1;
            }
        }
    }

    /// Shuts every connection down (`how`).
    pub fn shutdown_all(&self, how: Shutdown) {
        for c in self.open.values() {
            let _ = c.sock.shutdown(how);
        }
    }

    /// Open connections, and how many of them have not joined.
    pub fn counts(&self) -> (usize, usize) {
        (self.open.len(), self.pending)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn pending_connections_make_room_for_new_ones() {
        let limits = Limits {
            connections: 3,
            pending: 2,
            ..Limits::default()
        };
        let mut conns = Conns::default();
        let mut peers = Vec::new();
        let mut admit = |conns: &mut Conns| {
            let (a, b) = UnixStream::pair().unwrap();
            peers.push(b);
            conns.admit(a, &limits)
        };
        let first = admit(&mut conns).unwrap();
        let second = admit(&mut conns).unwrap();
        assert!(conns.joined(second));
        let third = admit(&mut conns).unwrap();
        assert_eq!(conns.counts(), (3, 2));
        // Full: the oldest pending one (the first) is closed for a new one.
        let fourth = admit(&mut conns).unwrap();
        assert_eq!(conns.counts(), (3, 2));
        assert!(!conns.joined(first));
        assert!(conns.joined(third));
        assert!(conns.joined(fourth));
        // Full of joined connections: refused.
        assert_eq!(admit(&mut conns), None);
        conns.remove(second);
        assert!(admit(&mut conns).is_some());
        let mut byte = [0u8; 1];
        assert_eq!(peers[0].read(&mut byte).unwrap(), 0, "closed");
    }
}
