//! The address a manager listens on (`CDO_FEDERATION_LISTEN`,
//! `--federation-listen`): `ip:port`, or `net/len:port`, this node's IPv4
//! address in that subnet (such as `10.0.0.0/24:7400`). The second form
//! lets one setting serve every node of a job (the same command on each,
//! under a launcher), as Open MPI's `oob_tcp_if_include` names networks.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};

/// The listening address `spec` names on this node.
///
/// # Errors
/// A malformed address or subnet, or no local interface in the subnet.
pub fn resolve(spec: &str) -> Result<SocketAddr, String> {
    let spec = spec.trim();
    let Some((net, rest)) = spec.split_once('/') else {
        return spec
            .parse()
            .map_err(|e| format!("{e} (expected ip:port or net/len:port)"));
    };
    let (len, port) = rest
        .split_once(':')
        .ok_or("expected net/len:port (a port after the subnet)")?;
    let net: Ipv4Addr = net
        .parse()
        .map_err(|e| format!("subnet address {net:?}: {e}"))?;
    let len: u32 = match len.parse() {
        Ok(n) if n <= 32 => n,
        _ => return Err(format!("prefix length {len:?}: expected 0 to 32")),
    };
    let port: u16 = port.parse().map_err(|e| format!("port {port:?}: {e}"))?;
    let locals = local_ipv4()?;
    pick(net, len, &locals)
        .map(|ip| SocketAddr::V4(SocketAddrV4::new(ip, port)))
        .ok_or_else(|| {
            let have: Vec<String> = locals.iter().map(Ipv4Addr::to_string).collect();
            format!(
                "no local address in {net}/{len} (this node has {})",
                have.join(", ")
            )
        })
}

/// The first of `locals` inside `net/len`.
fn pick(net: Ipv4Addr, len: u32, locals: &[Ipv4Addr]) -> Option<Ipv4Addr> {
    let mask = u32::MAX.checked_shl(32 - len).unwrap_or(0);
    locals
        .iter()
        .copied()
        .find(|ip| u32::from(*ip) & mask == u32::from(net) & mask)
}

/// The IPv4 addresses of this node's interfaces.
fn local_ipv4() -> Result<Vec<Ipv4Addr>, String> {
    let addrs = nix::ifaddrs::getifaddrs().map_err(|e| format!("getifaddrs: {e}"))?;
    Ok(addrs
        .filter_map(|a| a.address?.as_sockaddr_in().map(|s| s.ip()))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_subnet_picks_the_local_address_inside_it() {
        let locals: Vec<Ipv4Addr> = ["127.0.0.1", "10.1.2.3", "192.168.7.9"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        let net = |s: &str| s.parse::<Ipv4Addr>().unwrap();
        assert_eq!(pick(net("10.1.0.0"), 16, &locals), Some(net("10.1.2.3")));
        assert_eq!(
            pick(net("192.168.7.9"), 32, &locals),
            Some(net("192.168.7.9"))
        );
        assert_eq!(pick(net("0.0.0.0"), 0, &locals), Some(net("127.0.0.1")));
        assert_eq!(pick(net("10.2.0.0"), 16, &locals), None);
    }

    #[test]
    fn loopback_resolves_and_bad_forms_are_errors() {
        assert_eq!(
            resolve("127.0.0.0/8:7400").unwrap(),
            "127.0.0.1:7400".parse().unwrap()
        );
        assert_eq!(
            resolve("10.0.0.1:5").unwrap(),
            "10.0.0.1:5".parse().unwrap()
        );
        for bad in [
            "10.0.0.0/24",
            "10.0.0.0/33:1",
            "x/8:1",
            "10.0.0.0/8:x",
            "nope",
        ] {
            assert!(resolve(bad).is_err(), "{bad}");
        }
        let err = resolve("203.0.113.0/24:1").unwrap_err();
        assert!(err.contains("no local address"), "{err}");
    }
}
