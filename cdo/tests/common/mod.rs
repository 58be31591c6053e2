//! Test fixtures: a pool over this machine's DRAM plus an SSD tier in a
//! temporary directory.
#![allow(dead_code)]

use cdo::{Pool, PoolConfig, Schema};
use mamba::config::DirectoryTier;
use mamba::{ByteSize, Config, Mamba, SpaceId, Tier};
use std::sync::Arc;

pub struct Env {
    pub pool: Pool,
    _dir: tempfile::TempDir,
}

pub const APP_SCHEMA: &str = "namespace: app
attributes:
  step: { type: uint, required: true }
  t: float
  label: str
  tags: { type: list, items: str }
  when: timestamp
  ok: bool
  delta: int
";

pub fn mamba() -> (Arc<Mamba>, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = Config {
        gpu: false,
        chunk_size: ByteSize(4 << 20),
        huge_pages: false,
        ssd: vec![DirectoryTier {
            path: dir.path().to_owned(),
            capacity: Some(ByteSize(64 << 20)),
            bandwidth_mib_s: None,
            latency_ns: None,
        }],
        ..Config::default()
    };
    (Arc::new(Mamba::discover(&config).expect("discover")), dir)
}

pub fn env_with(config: PoolConfig) -> Env {
    let (mamba, dir) = mamba();
    let mut schema = Schema::default();
    schema.add_yaml(APP_SCHEMA, "app").expect("schema");
    let transport = Box::new(cdo::LocalTransport::new(Arc::clone(&mamba)));
    Env {
        pool: Pool::with_parts(mamba, config, schema, transport),
        _dir: dir,
    }
}

pub fn env() -> Env {
    env_with(PoolConfig::default())
}

pub fn space_of(pool: &Pool, tier: Tier) -> SpaceId {
    pool.mamba()
        .spaces()
        .find(|s| s.tier == tier)
        .expect("tier present")
        .id
}
