//! Configuration: a TOML file and `MAMBA_*` environment variables that
//! override or cap what discovery finds.
//!
//! ```toml
//! topology = "node.xml"            # describe another machine (hwloc XML)
//! # synthetic = "pack:2 numa:2 core:2 pu:1"
//! chunk_size = "64MiB"              # provider chunk carved by the pools
//! huge_pages = true                 # madvise(MADV_HUGEPAGE) on DRAM/HBM chunks
//!                                   # (chunks of 2 MiB and more are 2 MiB aligned)
//! # hugetlb = "2MiB"                # or "1GiB": NUMA memory from reserved
//!                                   # hugetlbfs pages (vm.nr_hugepages)
//! bind = "bind"                     # or "preferred"
//! gpu = true                        # look for CUDA/HIP devices
//!
//! [caps]                            # capacity limit of every space of a tier
//! hbm = "1GiB"
//! pinned = "16GiB"                  # page-locked memory per GPU (default: the
//!                                   # free memory of the GPU's NUMA node(s))
//!
//! [[space]]                         # override one discovered space by name
//! name = "dram0"
//! capacity = "2GiB"
//! bandwidth_mib_s = 20000
//!
//! [[ssd]]                           # a directory used as an SSD tier
//! path = "/scratch/mamba"
//! capacity = "100GiB"
//!
//! ssd_io = "direct"                 # SSD spaces as O_DIRECT spill files (not
//!                                   # CPU-addressable; default "page-cache":
//!                                   # shared file mappings)
//! spill_engine = "io_uring"         # or "pread"; default: io_uring where the
//!                                   # kernel has it
//!
//! [[nvdimm]]                        # an fsdax mount used as persistent memory
//! path = "/mnt/pmem0"
//! capacity = "64GiB"
//!
//! [watermarks]                      # demotion of movable data, per tier, as
//! hbm = { high = 0.9, low = 0.8 }   # shares of each space's capacity (this
//! dram = "0.95,0.85"                # is the default: 0.9 and 0.8)
//! ```
//!
//! Environment variables (read by [`Config::from_env`], applied after the
//! file named by `MAMBA_CONFIG`): `MAMBA_TOPOLOGY`, `MAMBA_SYNTHETIC`,
//! `MAMBA_CHUNK_SIZE`, `MAMBA_HUGE_PAGES` (0/1), `MAMBA_HUGETLB` (2MiB, 1GiB,
//! or empty for none), `MAMBA_BIND`
//! (bind/preferred), `MAMBA_GPU` (0/1), `MAMBA_SSD` and `MAMBA_NVDIMM`
//! (comma-separated `PATH` or `PATH=SIZE`), `MAMBA_SSD_IO`
//! (page-cache/direct), `MAMBA_SPILL_ENGINE` (io_uring/pread), `MAMBA_CAP_<TIER>` (e.g.
//! `MAMBA_CAP_DRAM=1GiB`), and `MAMBA_WATERMARKS_<TIER>=HIGH,LOW` (e.g.
//! `MAMBA_WATERMARKS_DRAM=0.9,0.8`).

use crate::error::{Error, Result};
use crate::hugepage::HugePageSize;
use crate::spill::IoEngine;
use crate::tier::Tier;
use crate::tiering::Watermarks;
use serde::{Deserialize, Deserializer};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// A number of bytes, written in TOML as an integer or as text with a unit
/// (`"64MiB"`, `"1.5G"`, `"4096"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ByteSize(pub usize);

impl std::str::FromStr for ByteSize {
    type Err = Error;

    fn from_str(text: &str) -> Result<Self> {
        let t = text.trim();
        let split = t
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(t.len());
        let (number, unit) = t.split_at(split);
        let value: f64 = number
            .parse()
            .map_err(|_| Error::Config(format!("{text:?} is not a size (e.g. 4096, 64MiB, 2G)")))?;
        let scale: f64 = match unit.trim().to_ascii_lowercase().as_str() {
            "" | "b" => 1.0,
            "k" | "kb" | "kib" => 1024.0,
            "m" | "mb" | "mib" => 1024.0 * 1024.0,
            "g" | "gb" | "gib" => 1024.0 * 1024.0 * 1024.0,
            "t" | "tb" | "tib" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
            other => {
                return Err(Error::Config(format!(
                    "unknown size unit {other:?} in {text:?} (use B, KiB, MiB, GiB or TiB)"
                )))
            }
        };
        let bytes = value * scale;
        if !bytes.is_finite() || bytes > isize::MAX as f64 {
            return Err(Error::Config(format!("size {text:?} is too large")));
        }
        Ok(ByteSize(bytes as usize))
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Int(u64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Int(n) => usize::try_from(n)
                .map(ByteSize)
                .map_err(serde::de::Error::custom),
            Raw::Text(s) => s.parse().map_err(serde::de::Error::custom),
        }
    }
}

/// NUMA policy for memory of DRAM, HBM and kmem NVDIMM spaces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BindPolicy {
    /// `MPOL_BIND`: pages come from the space's node or the allocation fails.
    #[default]
    Bind,
    /// `MPOL_PREFERRED`: the node first, other nodes when it is full.
    Preferred,
}

/// How SSD spaces reach their files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SsdIo {
    /// Shared file mappings served by the page cache: CPU-addressable, as
    /// fast as DRAM until memory runs short.
    #[default]
    PageCache,
    /// Preallocated spill files read and written with `O_DIRECT`
    /// ([`crate::spill`]): the disk's real cost, not CPU-addressable.
    Direct,
}

/// Overrides for one discovered space, matched by name.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpaceOverride {
    /// Name of the space (`dram0`, `hbm1`, ...).
    pub name: String,
    /// Capacity limit.
    pub capacity: Option<ByteSize>,
    /// Bandwidth in MiB/s.
    pub bandwidth_mib_s: Option<u64>,
    /// Latency in ns.
    pub latency_ns: Option<u64>,
}

/// A directory used as a file-backed tier (SSD, fsdax NVDIMM).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DirectoryTier {
    /// The directory; it must exist and be writable.
    pub path: PathBuf,
    /// Capacity limit; the free space of the file system when absent.
    pub capacity: Option<ByteSize>,
    /// Bandwidth in MiB/s, if known.
    pub bandwidth_mib_s: Option<u64>,
    /// Latency in ns, if known.
    pub latency_ns: Option<u64>,
}

/// The whole configuration. `Default` describes this machine as discovered.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// An hwloc XML file describing the node, instead of this machine.
    pub topology: Option<PathBuf>,
    /// An hwloc synthetic description of the node, instead of this machine.
    pub synthetic: Option<String>,
    /// Size of the chunks the pools obtain from their providers.
    pub chunk_size: ByteSize,
    /// Ask for transparent huge pages on anonymous NUMA memory.
    pub huge_pages: bool,
    /// Take the memory of NUMA spaces (DRAM, HBM, kmem NVDIMM) from the
    /// reserved hugetlbfs pages of this size instead; allocations fail with
    /// [`Error::HugePagesUnavailable`] when too few are reserved.
    pub hugetlb: Option<HugePageSize>,
    /// NUMA policy of anonymous NUMA memory.
    pub bind: BindPolicy,
    /// Look for GPUs (CUDA, HIP).
    pub gpu: bool,
    /// Capacity limit for every space of a tier.
    pub caps: BTreeMap<Tier, ByteSize>,
    /// Per-space overrides.
    pub space: Vec<SpaceOverride>,
    /// SSD directories.
    pub ssd: Vec<DirectoryTier>,
    /// fsdax persistent-memory directories.
    pub nvdimm: Vec<DirectoryTier>,
    /// How SSD spaces reach their files.
    pub ssd_io: SsdIo,
    /// The engine of SSD spill files (`None`: io_uring where available).
    pub spill_engine: Option<IoEngine>,
    /// Watermarks of the spaces of a tier for movable data
    /// ([`crate::tiering`]); [`Watermarks::DEFAULT`] for tiers not named.
    pub watermarks: BTreeMap<Tier, Watermarks>,
}

impl<'de> Deserialize<'de> for Tier {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            topology: None,
            synthetic: None,
            chunk_size: ByteSize(32 << 20),
            huge_pages: true,
            hugetlb: None,
            bind: BindPolicy::Bind,
            gpu: true,
            caps: BTreeMap::new(),
            space: Vec::new(),
            ssd: Vec::new(),
            nvdimm: Vec::new(),
            ssd_io: SsdIo::PageCache,
            spill_engine: None,
            watermarks: BTreeMap::new(),
        }
    }
}

impl Config {
    /// Parses a TOML document.
    pub fn from_toml_str(text: &str) -> Result<Self> {
        let config: Config = toml::from_str(text).map_err(|e| Error::Config(e.to_string()))?;
        config.validate()?;
        Ok(config)
    }

    /// The watermarks of the spaces of `tier`.
    pub fn watermarks_of(&self, tier: Tier) -> Watermarks {
        self.watermarks
            .get(&tier)
            .copied()
            .unwrap_or(Watermarks::DEFAULT)
    }

    /// Reads a TOML file. Relative paths inside it are taken relative to the
    /// file's directory.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::Config(format!("cannot read {}: {e}", path.display())))?;
        let mut config = Self::from_toml_str(&text)
            .map_err(|e| Error::Config(format!("{}: {e}", path.display())))?;
        if let Some(dir) = path.parent() {
            config.resolve_relative_to(dir);
        }
        Ok(config)
    }

    /// The file named by `MAMBA_CONFIG` (or the defaults), then the other
    /// `MAMBA_*` variables on top.
    pub fn from_env() -> Result<Self> {
        let mut config = match std::env::var_os("MAMBA_CONFIG") {
            Some(path) => Self::from_file(Path::new(&path))?,
            None => Config::default(),
        };
        config.apply_env(|key| std::env::var(key).ok())?;
        Ok(config)
    }

    /// Applies `MAMBA_*` overrides read through `var` (the process
    /// environment in [`Config::from_env`]; a map in tests).
    pub fn apply_env(&mut self, var: impl Fn(&str) -> Option<String>) -> Result<()> {
        if let Some(v) = var("MAMBA_TOPOLOGY") {
            self.topology = Some(v.into());
        }
        if let Some(v) = var("MAMBA_SYNTHETIC") {
            self.synthetic = Some(v);
        }
        if let Some(v) = var("MAMBA_CHUNK_SIZE") {
            self.chunk_size = v.parse()?;
        }
        if let Some(v) = var("MAMBA_HUGE_PAGES") {
            self.huge_pages = parse_flag("MAMBA_HUGE_PAGES", &v)?;
        }
        if let Some(v) = var("MAMBA_HUGETLB") {
            self.hugetlb = match v.trim() {
                "" | "0" | "off" | "none" => None,
                size => Some(size.parse()?),
            };
        }
        if let Some(v) = var("MAMBA_GPU") {
            self.gpu = parse_flag("MAMBA_GPU", &v)?;
        }
        if let Some(v) = var("MAMBA_BIND") {
            self.bind = match v.trim() {
                "bind" => BindPolicy::Bind,
                "preferred" => BindPolicy::Preferred,
                other => {
                    return Err(Error::Config(format!(
                        "MAMBA_BIND={other:?}: expected bind or preferred"
                    )))
                }
            };
        }
        if let Some(v) = var("MAMBA_SSD") {
            self.ssd.extend(parse_directories(&v)?);
        }
        if let Some(v) = var("MAMBA_SSD_IO") {
            self.ssd_io = match v.trim() {
                "page-cache" => SsdIo::PageCache,
                "direct" => SsdIo::Direct,
                other => {
                    return Err(Error::Config(format!(
                        "MAMBA_SSD_IO={other:?}: expected page-cache or direct"
                    )))
                }
            };
        }
        if let Some(v) = var("MAMBA_SPILL_ENGINE") {
            self.spill_engine = match v.trim() {
                "io_uring" => Some(IoEngine::IoUring),
                "pread" => Some(IoEngine::Pread),
                other => {
                    return Err(Error::Config(format!(
                        "MAMBA_SPILL_ENGINE={other:?}: expected io_uring or pread"
                    )))
                }
            };
        }
        if let Some(v) = var("MAMBA_NVDIMM") {
            self.nvdimm.extend(parse_directories(&v)?);
        }
        for tier in Tier::ALL {
            let key = format!("MAMBA_CAP_{}", tier.name().to_ascii_uppercase());
            if let Some(v) = var(&key) {
                self.caps.insert(tier, v.parse()?);
            }
            let key = format!("MAMBA_WATERMARKS_{}", tier.name().to_ascii_uppercase());
            if let Some(v) = var(&key) {
                let marks = v
                    .parse()
                    .map_err(|e| Error::Config(format!("{key}={v:?}: {e}")))?;
                self.watermarks.insert(tier, marks);
            }
        }
        self.validate()
    }

    fn validate(&self) -> Result<()> {
        if self.topology.is_some() && self.synthetic.is_some() {
            return Err(Error::Config(
                "give either a topology file or a synthetic description, not both".into(),
            ));
        }
        if self.chunk_size.0 < 4096 {
            return Err(Error::Config(format!(
                "chunk_size {} is below one page (4096 bytes)",
                self.chunk_size.0
            )));
        }
        Ok(())
    }

    fn resolve_relative_to(&mut self, dir: &Path) {
        let fix = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = dir.join(&*p);
            }
        };
        if let Some(t) = self.topology.as_mut() {
            fix(t);
        }
        for d in self.ssd.iter_mut().chain(self.nvdimm.iter_mut()) {
            fix(&mut d.path);
        }
    }
}

fn parse_flag(key: &str, value: &str) -> Result<bool> {
    match value.trim() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        other => Err(Error::Config(format!("{key}={other:?}: expected 0 or 1"))),
    }
}

fn parse_directories(list: &str) -> Result<Vec<DirectoryTier>> {
    list.split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|item| {
            let (path, capacity) = match item.split_once('=') {
                Some((p, size)) => (p, Some(size.parse()?)),
                None => (item, None),
            };
            Ok(DirectoryTier {
                path: PathBuf::from(path.trim()),
                capacity,
                bandwidth_mib_s: None,
                latency_ns: None,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn sizes_accept_units_and_reject_nonsense() {
        assert_eq!("4096".parse::<ByteSize>().unwrap(), ByteSize(4096));
        assert_eq!("64MiB".parse::<ByteSize>().unwrap(), ByteSize(64 << 20));
        assert_eq!("1.5 GiB".parse::<ByteSize>().unwrap(), ByteSize(3 << 29));
        assert_eq!("2k".parse::<ByteSize>().unwrap(), ByteSize(2048));
        assert!("12 parsecs".parse::<ByteSize>().is_err());
        assert!("MiB".parse::<ByteSize>().is_err());
        assert!("1e30".parse::<ByteSize>().is_err());
    }

    #[test]
    fn toml_file_fills_every_section() {
        let c = Config::from_toml_str(
            r#"
            synthetic = "pack:2 numa:1 core:1 pu:1"
            chunk_size = "8MiB"
            huge_pages = false
            hugetlb = "1GiB"
            ssd_io = "direct"
            spill_engine = "io_uring"
            bind = "preferred"
            gpu = false
            [caps]
            hbm = "1GiB"
            [[space]]
            name = "dram0"
            capacity = 1048576
            latency_ns = 80
            [[ssd]]
            path = "/tmp/ssd"
            capacity = "10GiB"
            [watermarks]
            hbm = { high = 0.7, low = 0.5 }
            dram = "0.95,0.85"
            "#,
        )
        .unwrap();
        assert_eq!(c.chunk_size, ByteSize(8 << 20));
        assert!(!c.huge_pages && !c.gpu);
        assert_eq!(c.hugetlb, Some(HugePageSize::Size1G));
        assert_eq!(
            (c.ssd_io, c.spill_engine),
            (SsdIo::Direct, Some(IoEngine::IoUring))
        );
        assert_eq!(c.bind, BindPolicy::Preferred);
        assert_eq!(c.caps[&Tier::Hbm], ByteSize(1 << 30));
        assert_eq!(c.space[0].capacity, Some(ByteSize(1 << 20)));
        assert_eq!(c.ssd[0].capacity, Some(ByteSize(10 << 30)));
        assert_eq!(
            c.watermarks_of(Tier::Hbm),
            Watermarks::new(0.7, 0.5).unwrap()
        );
        assert_eq!(
            c.watermarks_of(Tier::Dram),
            Watermarks::new(0.95, 0.85).unwrap()
        );
        assert_eq!(c.watermarks_of(Tier::Ssd), Watermarks::DEFAULT);
    }

    #[test]
    fn watermarks_out_of_order_or_range_are_errors() {
        for bad in [
            "[watermarks]\nhbm = { high = 0.5, low = 0.7 }",
            "[watermarks]\nhbm = { high = 1.5, low = 0.7 }",
            "[watermarks]\nhbm = { high = 0.9 }",
            "[watermarks]\nhbm = { high = 0.9, low = 0.8, mid = 0.85 }",
            "[watermarks]\nhbm = \"0.9\"",
            "[watermarks]\nhbm = \"high,low\"",
        ] {
            assert!(Config::from_toml_str(bad).is_err(), "{bad}");
        }
        let env: HashMap<&str, &str> = [("MAMBA_WATERMARKS_HBM", "0.2,0.4")].into();
        let err = Config::default()
            .apply_env(|k| env.get(k).map(|v| v.to_string()))
            .unwrap_err();
        assert!(err.to_string().contains("MAMBA_WATERMARKS_HBM"), "{err}");
    }

    #[test]
    fn unknown_keys_and_conflicts_are_errors() {
        assert!(Config::from_toml_str("colour = 3").is_err());
        assert!(Config::from_toml_str("[caps]\ntape = 1").is_err());
        assert!(Config::from_toml_str("topology = \"a.xml\"\nsynthetic = \"pu:1\"").is_err());
        assert!(Config::from_toml_str("chunk_size = 10").is_err());
    }

    #[test]
    fn environment_overrides_the_file() {
        let env: HashMap<&str, &str> = [
            ("MAMBA_CAP_DRAM", "512MiB"),
            ("MAMBA_SSD", "/a,/b=1GiB"),
            ("MAMBA_GPU", "0"),
            ("MAMBA_BIND", "preferred"),
            ("MAMBA_HUGETLB", "2MiB"),
            ("MAMBA_SSD_IO", "direct"),
            ("MAMBA_SPILL_ENGINE", "pread"),
            ("MAMBA_WATERMARKS_DRAM", "0.6, 0.3"),
        ]
        .into();
        let mut c = Config::default();
        c.apply_env(|k| env.get(k).map(|v| v.to_string())).unwrap();
        assert_eq!(c.caps[&Tier::Dram], ByteSize(512 << 20));
        assert_eq!(c.ssd.len(), 2);
        assert_eq!(c.ssd[1].capacity, Some(ByteSize(1 << 30)));
        assert!(!c.gpu);
        assert_eq!(c.bind, BindPolicy::Preferred);
        assert_eq!(c.hugetlb, Some(HugePageSize::Size2M));
        assert_eq!(c.ssd_io, SsdIo::Direct);
        assert_eq!(c.spill_engine, Some(IoEngine::Pread));
        assert_eq!(
            c.watermarks_of(Tier::Dram),
            Watermarks::new(0.6, 0.3).unwrap()
        );

        let bad: HashMap<&str, &str> = [("MAMBA_GPU", "maybe")].into();
        let err = Config::default()
            .apply_env(|k| bad.get(k).map(|v| v.to_string()))
            .unwrap_err();
        assert!(err.to_string().contains("MAMBA_GPU"), "{err}");
    }
}
