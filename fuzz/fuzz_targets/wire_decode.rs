//! The pool manager's frame decoder, as a connection's reader uses it: frames
//! are taken from the front of the stream buffer one by one until one is
//! incomplete or bad. Every decoded frame must re-encode, and its encoding
//! must decode to a frame with the very same encoding.

#![no_main]

use cdo::ipc::wire::{decode, encode, need, HEADER_LEN, MAX_FRAME};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut buf = data;
    loop {
        match decode(buf) {
            Ok(Some(d)) => {
                assert!(d.consumed >= HEADER_LEN && d.consumed <= buf.len());
                assert!(d.consumed - HEADER_LEN <= MAX_FRAME);
                let mut once = Vec::new();
                encode(&d.frame, d.fds, &mut once).expect("a decoded frame re-encodes");
                let again = decode(&once)
                    .expect("an encoded frame decodes")
                    .expect("an encoded frame is complete");
                assert_eq!(again.consumed, once.len());
                assert_eq!(again.fds, d.fds);
                let mut twice = Vec::new();
                encode(&again.frame, again.fds, &mut twice).expect("re-encodes");
                assert_eq!(once, twice, "encoding is not stable");
                buf = &buf[d.consumed..];
            }
            // A partial frame: at end of stream the reader reports it.
            Ok(None) => {
                if !buf.is_empty() {
                    assert!(need(buf).is_some());
                }
                break;
            }
            Err(_) => break,
        }
    }
});
