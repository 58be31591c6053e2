//! `fabric-peer`: one side of a pull between two processes (the fabric
//! crate's two-namespace test runs one in each namespace).
//!
//! ```text
//! fabric-peer produce --node ADDR --provider NAME --size BYTES --dir DIR [--timeout SECS]
//! fabric-peer consume --node ADDR --provider NAME --dir DIR [--timeout SECS]
//! ```
//!
//! The producer exposes BYTES of a known pattern, writes the region's
//! descriptor to `DIR/region` and serves until `DIR/done` appears. The
//! consumer reads the descriptor, pulls the region, checks every byte and
//! writes `DIR/done`. The exit status is 0 on success, 1 on any failure
//! (named on stderr).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use mamba_fabric::{Config, RegionDescriptor, Transport};

/// The bytes both sides agree on: differ between offsets and pages.
fn pattern(len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31) ^ (i >> 12) as u8)
        .collect()
}

struct Args {
    role: String,
    config: Config,
    size: usize,
    dir: PathBuf,
}

fn parse() -> Result<Args, String> {
    let mut it = std::env::args().skip(1);
    let role = it.next().ok_or("usage: fabric-peer produce|consume --node ADDR --provider NAME --dir DIR [--size BYTES] [--timeout SECS]")?;
    let mut config = Config::default();
    let (mut size, mut dir) = (0, None);
    while let Some(flag) = it.next() {
        let value = it.next().ok_or(format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--node" => config.node = Some(value),
            "--provider" => config.provider = Some(value),
            "--size" => size = value.parse().map_err(|_| format!("bad --size {value}"))?,
            "--dir" => dir = Some(PathBuf::from(value)),
            "--timeout" => {
                config.timeout = Duration::from_secs(
                    value
                        .parse()
                        .map_err(|_| format!("bad --timeout {value}"))?,
                )
            }
            _ => return Err(format!("unknown flag {flag}")),
        }
    }
    Ok(Args {
        role,
        config,
        size,
        dir: dir.ok_or("--dir is required")?,
    })
}

fn produce(a: &Args) -> Result<(), String> {
    let t = Transport::open(a.config.clone()).map_err(|e| e.to_string())?;
    let buf = pattern(a.size);
    let exposed = t.expose(&buf).map_err(|e| e.to_string())?;
    let tmp = a.dir.join("region.tmp");
    std::fs::write(&tmp, exposed.descriptor().to_string()).map_err(|e| e.to_string())?;
    std::fs::rename(&tmp, a.dir.join("region")).map_err(|e| e.to_string())?;
    let done = a.dir.join("done");
    let deadline = Instant::now() + a.config.timeout;
    t.serve(|| done.exists() || Instant::now() > deadline)
        .map_err(|e| e.to_string())?;
    match std::fs::read_to_string(&done) {
        Ok(s) if s == "ok" => Ok(()),
        Ok(s) => Err(format!("the consumer failed: {s}")),
        Err(_) => Err("the consumer did not finish in time".into()),
    }
}

fn wait_for(path: &Path, timeout: Duration) -> Result<String, String> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(s) = std::fs::read_to_string(path) {
            return Ok(s);
        }
        if Instant::now() > deadline {
            return Err(format!("{} did not appear", path.display()));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn consume(a: &Args) -> Result<(), String> {
    let text = wait_for(&a.dir.join("region"), a.config.timeout)?;
    let d: RegionDescriptor = text
        .parse()
        .map_err(|e: mamba_fabric::FabricError| e.to_string())?;
    let t = Transport::open(a.config.clone()).map_err(|e| e.to_string())?;
    let remote = t.connect(&d).map_err(|e| e.to_string())?;
    let mut dst = vec![0u8; d.len as usize];
    t.read_into(remote, &mut dst).map_err(|e| e.to_string())?;
    if dst != pattern(dst.len()) {
        return Err("the pulled bytes differ from the producer's".into());
    }
    eprintln!(
        "fabric-peer: pulled {} bytes over {}",
        dst.len(),
        t.choice()
    );
    Ok(())
}

fn main() {
    let result = parse().and_then(|a| match a.role.as_str() {
        "produce" => produce(&a),
        "consume" => {
            let r = consume(&a);
            let note = r.as_ref().map_or_else(|e| e.clone(), |_| "ok".to_string());
            // Written aside and renamed, so the producer never reads a
            // `done` that exists but is still empty.
            let tmp = a.dir.join("done.tmp");
            let _ =
                std::fs::write(&tmp, note).and_then(|()| std::fs::rename(&tmp, a.dir.join("done")));
            r
        }
        other => Err(format!("unknown role {other} (produce or consume)")),
    });
    if let Err(e) = result {
        eprintln!("fabric-peer: {e}");
        std::process::exit(1);
    }
}
