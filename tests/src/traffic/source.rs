//! Where each simulated customer connects from.
//!
//! Real customers come from their own addresses, and the distributor limits sign-ups per client
//! address (10 a minute by default, `--signups-per-minute`). Simulated customers that all came from
//! 127.0.0.1 would be one address signing up hundreds of accounts: a default distributor rightly
//! refuses all but the first ten. So when the distributor is on IPv4 loopback, each customer connects
//! from its own address in 127.0.0.0/8 (every one of them is this machine on Linux), chosen by its
//! index so that a customer reconnects from the address it signed up from. Against any other address
//! customers connect from wherever the kernel picks; give such a distributor a higher limit.

use std::net::{Ipv4Addr, SocketAddr};

/// The loopback address customer `index` connects from: 127.1.0.1, 127.1.0.2, …, skipping host
/// parts 0 and 255 so that no address looks like a network or broadcast address. Distinct for the
/// first 16 million customers, far beyond any run on one machine.
pub fn loopback_source(index: u32) -> Ipv4Addr {
    let per_block = 254u32;
    let host = (index % per_block) as u8 + 1;
    let block = index / per_block;
    let [_, _, high, low] = block.to_be_bytes();
    Ipv4Addr::new(127, high.wrapping_add(1), low, host)
}

/// The address customer `index` should connect from to reach `server`: its own loopback address
/// when `server` is on IPv4 loopback, else `None` (let the kernel choose).
pub fn source_for(server: SocketAddr, index: u32) -> Option<SocketAddr> {
    match server {
        SocketAddr::V4(v4) if v4.ip().is_loopback() => {
            Some(SocketAddr::new(loopback_source(index).into(), 0))
        }
        _ => None,
    }
}

/// The address customer `index` should connect from to reach `server` (`host:port`): see
/// [`source_for`]. `None` also when the name does not resolve (connecting then says why).
pub async fn source_for_server(server: &str, index: u32) -> Option<SocketAddr> {
    let addr = tokio::net::lookup_host(server).await.ok()?.next()?;
    source_for(addr, index)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn every_customer_of_a_large_run_gets_its_own_loopback_address() {
        let addresses: HashSet<Ipv4Addr> = (0..100_000).map(loopback_source).collect();
        assert_eq!(addresses.len(), 100_000);
        assert!(addresses.iter().all(|a| a.is_loopback()));
        assert!(addresses
            .iter()
            .all(|a| a.octets()[3] != 0 && a.octets()[3] != 255));
    }

    #[test]
    fn a_customer_reconnects_from_the_address_it_first_used() {
        assert_eq!(loopback_source(7), loopback_source(7));
        assert_ne!(loopback_source(7), loopback_source(8));
    }

    #[test]
    fn only_a_loopback_server_gets_chosen_source_addresses() {
        let local: SocketAddr = "127.0.0.1:9000".parse().unwrap();
        let remote: SocketAddr = "192.0.2.7:9000".parse().unwrap();
        let v6: SocketAddr = "[::1]:9000".parse().unwrap();
        assert!(source_for(local, 3).is_some());
        assert_eq!(source_for(remote, 3), None);
        assert_eq!(source_for(v6, 3), None);
    }

    #[tokio::test]
    async fn customers_reach_a_loopback_server_from_their_own_addresses() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let server = listener.local_addr().unwrap().to_string();
        let mut seen = HashSet::new();
        for index in [0, 1, 300] {
            let source = source_for_server(&server, index).await;
            assert_eq!(source.map(|s| s.ip()), Some(loopback_source(index).into()));
            let socket = tokio::net::TcpSocket::new_v4().unwrap();
            socket.bind(source.unwrap()).unwrap();
            let _client = socket.connect(server.parse().unwrap()).await.unwrap();
            let (_, peer) = listener.accept().await.unwrap();
            assert_eq!(peer.ip(), std::net::IpAddr::V4(loopback_source(index)));
            seen.insert(peer.ip());
        }
        assert_eq!(seen.len(), 3);
    }
}
