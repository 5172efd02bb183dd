//! One DNS query straight to a server: UDP, then TCP when the answer is
//! truncated. Shared by the propagation checker (to authoritative servers, no
//! recursion) and the preflight (to public resolvers, with recursion).

use std::net::SocketAddr;
use std::time::Duration;

use hickory_proto::op::{Edns, Message, MessageType, Query};
use hickory_proto::rr::{Name, RecordType};
use rand::RngExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

/// How long one query may take (per transport).
pub const QUERY_TIMEOUT: Duration = Duration::from_secs(2);

/// An answer, and how many packets it cost (2 when UDP was truncated).
pub struct Answer {
    pub message: Message,
    pub queries: u64,
}

/// Asks `server` for `name`/`rtype`. `recursion_desired` is false for
/// authoritative servers (their own data only) and true for resolvers.
pub async fn query(
    name: &str,
    rtype: RecordType,
    server: SocketAddr,
    recursion_desired: bool,
) -> Result<Answer, String> {
    let qname = Name::from_ascii(name).map_err(|e| format!("bad name {name}: {e}"))?;
    let mut m = Message::query();
    m.metadata.id = rand::rng().random();
    m.metadata.recursion_desired = recursion_desired;
    m.add_query(Query::query(qname, rtype));
    m.set_edns(Edns::new());
    let bytes = m
        .to_vec()
        .map_err(|e| format!("cannot encode query: {e}"))?;
    let mut resp = udp(&bytes, server).await?;
    let mut queries = 1;
    if resp.metadata.id != m.metadata.id {
        return Err("answer with a wrong id".into());
    }
    if resp.metadata.truncation {
        resp = tcp(&bytes, server).await?;
        queries += 1;
    }
    if resp.metadata.message_type != MessageType::Response {
        return Err("not a response".into());
    }
    Ok(Answer {
        message: resp,
        queries,
    })
}

async fn udp(bytes: &[u8], server: SocketAddr) -> Result<Message, String> {
    let bind: SocketAddr = if server.is_ipv4() {
        SocketAddr::from(([0, 0, 0, 0], 0))
    } else {
        SocketAddr::from(([0u16; 8], 0))
    };
    let sock = UdpSocket::bind(bind)
        .await
        .map_err(|e| format!("UDP socket: {e}"))?;
    sock.connect(server)
        .await
        .map_err(|e| format!("UDP connect: {e}"))?;
    sock.send(bytes)
        .await
        .map_err(|e| format!("UDP send: {e}"))?;
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(QUERY_TIMEOUT, sock.recv(&mut buf))
        .await
        .map_err(|_| "no answer (timeout)".to_string())?
        .map_err(|e| format!("UDP receive: {e}"))?;
    Message::from_vec(&buf[..n]).map_err(|e| format!("malformed answer: {e}"))
}

async fn tcp(bytes: &[u8], server: SocketAddr) -> Result<Message, String> {
    let work = async {
        let mut s = TcpStream::connect(server)
            .await
            .map_err(|e| format!("TCP connect: {e}"))?;
        let len = u16::try_from(bytes.len()).map_err(|_| "query too large".to_string())?;
        s.write_all(&len.to_be_bytes())
            .await
            .map_err(|e| format!("TCP send: {e}"))?;
        s.write_all(bytes)
            .await
            .map_err(|e| format!("TCP send: {e}"))?;
        let n = s
            .read_u16()
            .await
            .map_err(|e| format!("TCP receive: {e}"))?;
        let mut buf = vec![0u8; usize::from(n)];
        s.read_exact(&mut buf)
            .await
            .map_err(|e| format!("TCP receive: {e}"))?;
        Message::from_vec(&buf).map_err(|e| format!("malformed answer: {e}"))
    };
    tokio::time::timeout(QUERY_TIMEOUT, work)
        .await
        .map_err(|_| "no answer over TCP (timeout)".to_string())?
}
