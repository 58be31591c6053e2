//! Challenge-response between two pool managers: each proves that it holds
//! the workflow token with an HMAC-SHA256 over both nodes' names and fresh
//! nonces; the token itself never crosses the network.
//!
//! ```text
//! dialler  -> listener  Hello     { version, node: D, nonce: Nd }
//! listener -> dialler   Challenge { node: L, nonce: Nl, proof: HMAC(token, "L" D L Nd Nl) }
//! dialler  -> listener  Proof     { proof: HMAC(token, "D" D L Nd Nl) }
//! listener -> dialler   Welcome, or Refused { reason }
//! ```
//!
//! The role byte keeps a proof of one side from being replayed as the
//! other's; the nonces keep any proof from being replayed later.

use std::io::Read;
use std::net::TcpStream;

use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::link::{read_msg, write_msg, PeerMsg};

/// Version of the peer protocol, checked in `Hello` (2: offers with
/// their bytes inline; 3: consumer groups across nodes, requires of names
/// offered nowhere broadcast; 4: under the best-effort policy, copies of
/// a lost node's objects sought from the peers; 5: a consumer's events
/// sent to the node that offers the object).
pub(super) const PEER_PROTOCOL_VERSION: u32 = 6;
/// Bytes of a nonce and of a proof.
pub(super) const PROOF_LEN: usize = 32;

type HmacSha256 = Hmac<Sha256>;

/// Why a handshake failed, for the log.
pub(super) type Refusal = String;

/// A fresh random nonce.
fn nonce() -> Result<[u8; PROOF_LEN], Refusal> {
    let mut n = [0; PROOF_LEN];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut n))
        .map_err(|e| format!("no random nonce: {e}"))?;
    Ok(n)
}

/// The MAC of `role` over both names and nonces.
fn mac(token: &str, role: u8, dialler: &str, listener: &str, nd: &[u8], nl: &[u8]) -> HmacSha256 {
    let mut m =
        HmacSha256::new_from_slice(token.as_bytes()).expect("HMAC takes keys of any length");
    m.update(&[role]);
    for part in [dialler.as_bytes(), listener.as_bytes()] {
        m.update(&(part.len() as u64).to_le_bytes());
        m.update(part);
    }
    m.update(nd);
    m.update(nl);
    m
}

/// The proof of `role`.
pub(super) fn prove(
    token: &str,
    role: u8,
    dialler: &str,
    listener: &str,
    nd: &[u8],
    nl: &[u8],
) -> [u8; PROOF_LEN] {
    mac(token, role, dialler, listener, nd, nl)
        .finalize()
        .into_bytes()
        .into()
}

/// Whether `proof` is the proof of `role` (compared in constant time).
pub(super) fn verify(
    token: &str,
    role: u8,
    dialler: &str,
    listener: &str,
    nd: &[u8],
    nl: &[u8],
    proof: &[u8],
) -> bool {
    mac(token, role, dialler, listener, nd, nl)
        .verify_slice(proof)
        .is_ok()
}

fn refuse(stream: &mut TcpStream, reason: Refusal) -> Refusal {
    let _ = write_msg(
        stream,
        &PeerMsg::Refused {
            reason: reason.clone(),
        },
    );
    reason
}

/// The dialling side: returns the listener's node name once both are
/// proven.
pub(super) fn dial(stream: &mut TcpStream, me: &str, token: &str) -> Result<String, Refusal> {
    let nd = nonce()?;
    let hello = PeerMsg::Hello {
        version: PEER_PROTOCOL_VERSION,
        node: me.into(),
        nonce: nd,
    };
    write_msg(stream, &hello).map_err(|e| format!("sending hello: {e}"))?;
    let (listener, nl, proof) = match read_msg(stream).map_err(|e| format!("no challenge: {e}"))? {
        PeerMsg::Challenge { node, nonce, proof } => (node, nonce, proof),
        PeerMsg::Refused { reason } => return Err(format!("refused by the peer: {reason}")),
        other => return Err(format!("unexpected {other:?} instead of a challenge")),
    };
    if !verify(token, b'L', me, &listener, &nd, &nl, &proof) {
        return Err(refuse(
            stream,
            format!("peer {listener} did not prove the workflow token"),
        ));
    }
    let proof = prove(token, b'D', me, &listener, &nd, &nl);
    write_msg(stream, &PeerMsg::Proof { proof }).map_err(|e| format!("sending proof: {e}"))?;
    match read_msg(stream).map_err(|e| format!("no answer to the proof: {e}"))? {
        PeerMsg::Welcome => Ok(listener),
        PeerMsg::Refused { reason } => Err(format!("refused by {listener}: {reason}")),
        other => Err(format!("unexpected {other:?} instead of a welcome")),
    }
}

/// The listening side: returns the dialler's node name once both are
/// proven.
pub(super) fn answer(stream: &mut TcpStream, me: &str, token: &str) -> Result<String, Refusal> {
    let (dialler, nd) = match read_msg(stream).map_err(|e| format!("no hello: {e}"))? {
        PeerMsg::Hello {
            version,
            node,
            nonce,
        } => {
            if version != PEER_PROTOCOL_VERSION {
                return Err(refuse(
                    stream,
                    format!(
                        "{node}: peer protocol {version}, this node speaks {PEER_PROTOCOL_VERSION}"
                    ),
                ));
            }
            (node, nonce)
        }
        other => {
            return Err(refuse(
                stream,
                format!("unexpected {other:?} instead of hello"),
            ))
        }
    };
    let nl = nonce()?;
    let proof = prove(token, b'L', &dialler, me, &nd, &nl);
    let challenge = PeerMsg::Challenge {
        node: me.into(),
        nonce: nl,
        proof,
    };
    write_msg(stream, &challenge).map_err(|e| format!("sending challenge: {e}"))?;
    match read_msg(stream).map_err(|e| format!("{dialler}: no proof: {e}"))? {
        PeerMsg::Proof { proof } if verify(token, b'D', &dialler, me, &nd, &nl, &proof) => {
            write_msg(stream, &PeerMsg::Welcome).map_err(|e| format!("sending welcome: {e}"))?;
            Ok(dialler)
        }
        PeerMsg::Proof { .. } => Err(refuse(
            stream,
            format!("{dialler}: wrong workflow token (its proof did not verify)"),
        )),
        PeerMsg::Refused { reason } => Err(format!("{dialler} refused us: {reason}")),
        other => Err(refuse(
            stream,
            format!("{dialler}: unexpected {other:?} instead of a proof"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proofs_depend_on_token_role_names_and_nonces() {
        let (nd, nl) = ([1u8; 32], [2u8; 32]);
        let p = prove("secret", b'D', "a:1", "b:2", &nd, &nl);
        assert!(verify("secret", b'D', "a:1", "b:2", &nd, &nl, &p));
        assert!(!verify("secreT", b'D', "a:1", "b:2", &nd, &nl, &p));
        assert!(!verify("secret", b'L', "a:1", "b:2", &nd, &nl, &p));
        assert!(!verify("secret", b'D', "b:2", "a:1", &nd, &nl, &p));
        assert!(!verify("secret", b'D', "a:1", "b:2", &nl, &nd, &p));
        assert!(!verify("secret", b'D', "a:1", "b:2", &nd, &nl, &p[..31]));
        // Name boundaries are part of the MAC: "a:" + "1b:2" is another pair.
        assert!(!verify("secret", b'D', "a:", "1b:2", &nd, &nl, &p));
    }

    #[test]
    fn a_peer_of_an_older_protocol_is_refused_with_its_reason() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let old = std::thread::spawn(move || {
            let mut s = TcpStream::connect(addr).unwrap();
            let hello = PeerMsg::Hello {
                version: 5,
                node: "old:1".into(),
                nonce: [0; PROOF_LEN],
            };
            write_msg(&mut s, &hello).unwrap();
            read_msg(&mut s).unwrap()
        });
        let (mut s, _) = listener.accept().unwrap();
        let why = answer(&mut s, "new:2", "secret").unwrap_err();
        assert!(
            why.contains("peer protocol 5") && why.contains("speaks 6"),
            "{why}"
        );
        assert_eq!(old.join().unwrap(), PeerMsg::Refused { reason: why });
    }

    #[test]
    fn nonces_differ() {
        assert_ne!(nonce().unwrap(), nonce().unwrap());
    }
}
