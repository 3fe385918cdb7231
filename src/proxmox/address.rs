//! Addresses for clones of a container (`clone_ipv4`, as for albatross groups): a
//! clone keeps its source's `net0`, and so its static `ip=`, unless it is given
//! the lowest free address of the group's pool (free: neither the source's nor an
//! owned clone's, read from their configs), with the source's prefix; the other
//! `net0` fields (bridge, gateway, MAC) stay.

use std::net::Ipv4Addr;

/// The static address and prefix of a `net0` value (`ip=10.0.0.5/24`); `None` for
/// `ip=dhcp`, `ip=manual` or none.
pub fn static_ip(net0: &str) -> Option<(Ipv4Addr, u8)> {
    net0.split(',').find_map(|f| {
        let v = f.trim().strip_prefix("ip=")?;
        let (a, p) = v.split_once('/')?;
        Some((a.parse().ok()?, p.parse().ok()?))
    })
}

/// `net0` with its `ip=` replaced by `addr/prefix`.
pub fn with_ip(net0: &str, addr: Ipv4Addr, prefix: u8) -> String {
    net0.split(',')
        .map(|f| {
            if f.trim().starts_with("ip=") {
                format!("ip={addr}/{prefix}")
            } else {
                f.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_address_changes() {
        let n =
            "name=eth0,bridge=vmbr0,hwaddr=BC:24:11:00:00:01,ip=10.0.0.5/24,gw=10.0.0.1,type=veth";
        assert_eq!(static_ip(n), Some(("10.0.0.5".parse().unwrap(), 24)));
        assert_eq!(
            with_ip(n, "10.0.0.20".parse().unwrap(), 24),
            "name=eth0,bridge=vmbr0,hwaddr=BC:24:11:00:00:01,ip=10.0.0.20/24,gw=10.0.0.1,type=veth"
        );
        assert_eq!(static_ip("name=eth0,bridge=vmbr0,ip=dhcp"), None);
        assert_eq!(static_ip("name=eth0,bridge=vmbr0"), None);
    }
}
