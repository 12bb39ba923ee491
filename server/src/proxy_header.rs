//! The PROXY protocol header a trusted load balancer puts before a connection (HAProxy's
//! `send-proxy` / `send-proxy-v2`), so that sign-up and login throttling count each customer's own
//! address rather than the balancer's, which every customer behind it shares.
//!
//! Only a peer named by `--trust-proxy` may send one, and it may also connect without one (a health
//! check, a direct operator). The header cannot be taken for a frame: a frame starts with its u32
//! length, whose first byte is 0 for any frame the server accepts, while a v2 header starts with
//! `\r` and a v1 header with `P`. From any other peer those bytes stay where they are and are refused
//! as the oversized frame they look like. Parsing is the `ppp` crate's; here is only how many bytes
//! to read, so that not one byte of the first frame is consumed with the header.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

/// The 12 bytes every v2 header starts with.
const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";
/// A v1 header is one line of at most this many bytes, `\r\n` included.
const V1_MAX: usize = 107;
/// The most address and TLV bytes a v2 header may carry here: addresses are at most 216 bytes
/// (two Unix paths); HAProxy's TLVs (ALPN, authority, unique id, SSL) fit well within the rest.
const V2_MAX_BODY: usize = 1024;

/// Why a header was refused; the connection is closed.
#[derive(Debug, thiserror::Error)]
pub enum HeaderError {
    /// The header did not arrive whole within the deadline.
    #[error("the PROXY header did not arrive within {0:?}")]
    Timeout(Duration),
    /// The socket failed or closed mid-header.
    #[error("reading the PROXY header: {0}")]
    Io(#[from] std::io::Error),
    /// The bytes are not a PROXY header.
    #[error("not a valid PROXY header: {0}")]
    Invalid(String),
}

/// The address a connection from `peer` serves: the client's address named in its PROXY header if
/// `peer` is trusted and sent one, else `peer`. A trusted peer's header that is malformed or late
/// (past `deadline`) is an error; the caller closes the connection.
pub async fn client_address(
    stream: &mut TcpStream,
    peer: SocketAddr,
    trusted: &[IpAddr],
    deadline: Duration,
) -> Result<SocketAddr, HeaderError> {
    if !trusted.contains(&peer.ip()) {
        return Ok(peer);
    }
    match tokio::time::timeout(deadline, read(stream, peer)).await {
        Ok(result) => result,
        Err(_) => Err(HeaderError::Timeout(deadline)),
    }
}

async fn read(stream: &mut TcpStream, peer: SocketAddr) -> Result<SocketAddr, HeaderError> {
    let mut first = [0u8; 1];
    // Waits for the first byte without taking it: a connection without a header keeps it.
    if stream.peek(&mut first).await? == 0 {
        return Ok(peer);
    }
    let header = match first[0] {
        b'\r' => read_v2(stream).await?,
        b'P' => read_v1(stream).await?,
        _ => return Ok(peer),
    };
    named_source(&header).map(|named| named.unwrap_or(peer))
}

/// The signature and fixed part, then exactly the length they announce.
async fn read_v2(stream: &mut TcpStream) -> Result<Vec<u8>, HeaderError> {
    let mut header = vec![0u8; 16];
    stream.read_exact(&mut header).await?;
    if header[..12] != V2_SIGNATURE {
        return Err(HeaderError::Invalid("a bad v2 signature".into()));
    }
    let body = usize::from(u16::from_be_bytes([header[14], header[15]]));
    if body > V2_MAX_BODY {
        return Err(HeaderError::Invalid(format!(
            "a v2 header of {body} bytes (at most {V2_MAX_BODY})"
        )));
    }
    header.resize(16 + body, 0);
    stream.read_exact(&mut header[16..]).await?;
    Ok(header)
}

/// One line, a byte at a time: the line's end is not known before it comes, and a byte past it
/// belongs to the first frame. At most [`V1_MAX`] bytes, once per connection.
async fn read_v1(stream: &mut TcpStream) -> Result<Vec<u8>, HeaderError> {
    let mut line = Vec::with_capacity(V1_MAX);
    while !line.ends_with(b"\r\n") {
        if line.len() == V1_MAX {
            return Err(HeaderError::Invalid(format!(
                "a v1 line longer than {V1_MAX} bytes"
            )));
        }
        line.push(stream.read_u8().await?);
    }
    Ok(line)
}

/// The client address a whole header names; `None` for one that names none (v2 `LOCAL`, a health
/// check by the balancer itself; v1 `UNKNOWN`; a Unix socket).
fn named_source(header: &[u8]) -> Result<Option<SocketAddr>, HeaderError> {
    use ppp::{v1, v2, HeaderResult};
    let invalid = |e: &dyn std::fmt::Display| HeaderError::Invalid(e.to_string());
    match HeaderResult::parse(header) {
        HeaderResult::V2(Ok(h)) => Ok(match (h.command, h.addresses) {
            (v2::Command::Local, _) => None,
            (_, v2::Addresses::IPv4(a)) => {
                Some(SocketAddr::new(IpAddr::V4(a.source_address), a.source_port))
            }
            (_, v2::Addresses::IPv6(a)) => {
                Some(SocketAddr::new(IpAddr::V6(a.source_address), a.source_port))
            }
            (_, _) => None,
        }),
        HeaderResult::V1(Ok(h)) => Ok(match h.addresses {
            v1::Addresses::Tcp4(a) => {
                Some(SocketAddr::new(IpAddr::V4(a.source_address), a.source_port))
            }
            v1::Addresses::Tcp6(a) => {
                Some(SocketAddr::new(IpAddr::V6(a.source_address), a.source_port))
            }
            v1::Addresses::Unknown => None,
        }),
        HeaderResult::V2(Err(e)) => Err(invalid(&e)),
        HeaderResult::V1(Err(e)) => Err(invalid(&e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    /// A connected pair: what the balancer writes, and the server's side.
    async fn pair() -> (TcpStream, TcpStream, SocketAddr) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, peer) = listener.accept().await.unwrap();
        (client, server, peer)
    }

    fn v2_header(source: SocketAddr, destination: SocketAddr) -> Vec<u8> {
        ppp::v2::Builder::with_addresses(
            ppp::v2::Version::Two | ppp::v2::Command::Proxy,
            ppp::v2::Protocol::Stream,
            (source, destination),
        )
        .build()
        .unwrap()
    }

    const FRAME: &[u8] = &[0, 0, 0, 3, 7, 8, 9];

    async fn rest(server: &mut TcpStream) -> Vec<u8> {
        let mut rest = vec![0u8; FRAME.len()];
        server.read_exact(&mut rest).await.unwrap();
        rest
    }

    #[tokio::test]
    async fn a_trusted_balancers_v1_or_v2_header_names_the_client_and_leaves_the_first_frame_whole()
    {
        let client_addr: SocketAddr = "203.0.113.7:40000".parse().unwrap();
        let v1 = b"PROXY TCP4 203.0.113.7 127.0.0.1 40000 7000\r\n".to_vec();
        for header in [
            v2_header(client_addr, "127.0.0.1:7000".parse().unwrap()),
            v1,
        ] {
            let (mut client, mut server, peer) = pair().await;
            client.write_all(&header).await.unwrap();
            client.write_all(FRAME).await.unwrap();
            let trusted = [peer.ip()];
            let named = client_address(&mut server, peer, &trusted, Duration::from_secs(5))
                .await
                .unwrap();
            assert_eq!(named, client_addr);
            assert_eq!(rest(&mut server).await, FRAME);
        }
    }

    #[tokio::test]
    async fn a_trusted_peer_without_a_header_keeps_its_own_address_and_its_bytes() {
        let (mut client, mut server, peer) = pair().await;
        client.write_all(FRAME).await.unwrap();
        let trusted = [peer.ip()];
        let named = client_address(&mut server, peer, &trusted, Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(named, peer);
        assert_eq!(rest(&mut server).await, FRAME);
    }

    #[tokio::test]
    async fn an_untrusted_peers_header_is_not_read_and_names_nobody() {
        let (mut client, mut server, peer) = pair().await;
        let header = v2_header(
            "198.51.100.1:1".parse().unwrap(),
            "127.0.0.1:2".parse().unwrap(),
        );
        client.write_all(&header).await.unwrap();
        let named = client_address(&mut server, peer, &[], Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(named, peer);
        let mut first = vec![0u8; header.len()];
        server.read_exact(&mut first).await.unwrap();
        assert_eq!(first, header, "the bytes stay for the framing to refuse");
    }

    #[tokio::test]
    async fn a_garbled_oversized_or_late_header_is_refused() {
        let mut garbled = v2_header(
            "198.51.100.1:1".parse().unwrap(),
            "127.0.0.1:2".parse().unwrap(),
        );
        garbled[12] = 0x99; // neither v2 nor a known command
        let mut oversized = V2_SIGNATURE.to_vec();
        oversized.extend([0x21, 0x11, 0xff, 0xff]);
        let endless = [b'P'; 200].to_vec();
        let late = b"PROXY TCP4 1.2.3.4".to_vec();
        for (bytes, what) in [
            (garbled, "garbled"),
            (oversized, "oversized"),
            (endless, "endless"),
            (late, "late"),
        ] {
            let (mut client, mut server, peer) = pair().await;
            client.write_all(&bytes).await.unwrap();
            let trusted = [peer.ip()];
            let result =
                client_address(&mut server, peer, &trusted, Duration::from_millis(300)).await;
            assert!(result.is_err(), "{what}: {result:?}");
        }
    }
}
