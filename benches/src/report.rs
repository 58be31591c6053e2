//! One JSON line per benchmark case.

use serde::Serialize;

/// Whether a bigger or a smaller figure is better for a case's unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Better {
    /// Throughputs: GB/s, operations per second.
    Higher,
    /// Latencies: ns per operation.
    Lower,
}

/// A benchmark result: ours against a peer measured in the same run.
///
/// `ratio` is greater than 1 when ours is better, whatever the direction of
/// the unit.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    /// Benchmark family (`alloc`, `transforms`, ...).
    pub bench: String,
    /// Case name within the family.
    pub case: String,
    /// Unit of `ours` and `peer`.
    pub unit: String,
    /// Direction of improvement.
    pub better: Better,
    /// Our median figure.
    pub ours: f64,
    /// The peer's median figure, when there is a peer.
    pub peer: Option<f64>,
    /// What the peer is (`memcpy`, `mimalloc`, ...).
    pub peer_name: Option<String>,
    /// ours/peer for `higher`, peer/ours for `lower`; > 1 when ours wins.
    pub ratio: Option<f64>,
    /// Resident bytes that ours and the peer keep, where a case measures
    /// them (its documentation says how); left out of the JSON otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resident_bytes: Option<Resident>,
    /// Named counts of ours and of the peer (bytes moved, allocations),
    /// where a case reports them; left out of the JSON otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub counts: Option<Counts>,
}

/// Named counts of ours and of the peer, as one case defines them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    /// Ours, by name.
    pub ours: std::collections::BTreeMap<String, u64>,
    /// The peer, by name.
    pub peer: std::collections::BTreeMap<String, u64>,
}

/// Resident bytes of ours and of the peer, as one case defines them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Resident {
    /// Ours.
    pub ours: u64,
    /// The peer.
    pub peer: u64,
}

impl Row {
    /// A row comparing `ours` with a named peer; the ratio follows `better`.
    pub fn compared(
        bench: &str,
        case: &str,
        unit: &str,
        better: Better,
        ours: f64,
        peer: f64,
        peer_name: &str,
    ) -> Self {
        let ratio = match better {
            Better::Higher => ours / peer,
            Better::Lower => peer / ours,
        };
        Row {
            bench: bench.into(),
            case: case.into(),
            unit: unit.into(),
            better,
            ours,
            peer: Some(peer),
            peer_name: Some(peer_name.into()),
            ratio: Some(ratio),
            resident_bytes: None,
            counts: None,
        }
    }

    /// The row with the resident bytes of ours and of the peer.
    pub fn with_resident(mut self, resident: Resident) -> Self {
        self.resident_bytes = Some(resident);
        self
    }

    /// The row with named counts of ours and of the peer.
    pub fn with_counts(mut self, counts: Counts) -> Self {
        self.counts = Some(counts);
        self
    }

    /// A row with no peer (the target is stated elsewhere).
    pub fn alone(bench: &str, case: &str, unit: &str, better: Better, ours: f64) -> Self {
        Row {
            bench: bench.into(),
            case: case.into(),
            unit: unit.into(),
            better,
            ours,
            peer: None,
            peer_name: None,
            ratio: None,
            resident_bytes: None,
            counts: None,
        }
    }

    /// Prints the row as one JSON line on standard output.
    pub fn print(&self) {
        println!(
            "{}",
            serde_json::to_string(self).expect("a Row always serialises")
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratio_is_above_one_when_ours_wins_either_way() {
        let fast = Row::compared("b", "c", "ns/op", Better::Lower, 5.0, 10.0, "p");
        assert_eq!(fast.ratio, Some(2.0));
        let bw = Row::compared("b", "c", "GB/s", Better::Higher, 30.0, 10.0, "p");
        assert_eq!(bw.ratio, Some(3.0));
        let json = serde_json::to_string(&fast).unwrap();
        assert!(json.contains("\"better\":\"lower\""), "{json}");
        assert!(json.contains("\"peer_name\":\"p\""), "{json}");
        assert!(!json.contains("resident_bytes"), "{json}");
        assert!(!json.contains("counts"), "{json}");
    }

    #[test]
    fn resident_bytes_appear_only_when_measured() {
        let row = Row::compared("b", "c", "ns/op", Better::Lower, 5.0, 10.0, "p")
            .with_resident(Resident { ours: 3, peer: 0 });
        let json = serde_json::to_string(&row).unwrap();
        assert!(
            json.contains("\"resident_bytes\":{\"ours\":3,\"peer\":0}"),
            "{json}"
        );
    }
}
