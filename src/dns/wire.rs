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
pub(crate) const QUERY_TIMEOUT: Duration = Duration::from_secs(2);

/// Why a query got no usable answer. The texts are the ones callers have always
/// shown (the propagation checker puts them in "last answer: ...").
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("bad name {name}: {source}")]
    BadName {
        name: String,
        #[source]
        source: hickory_proto::ProtoError,
    },
    #[error("cannot encode query: {0}")]
    Encode(#[source] hickory_proto::ProtoError),
    #[error("query too large")]
    TooLarge,
    /// `step`: which socket operation failed, e.g. "UDP send".
    #[error("{step}: {source}")]
    Io {
        step: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("no answer (timeout)")]
    UdpTimeout,
    #[error("no answer over TCP (timeout)")]
    TcpTimeout,
    #[error("answer with a wrong id")]
    WrongId,
    #[error("not a response")]
    NotResponse,
    #[error("malformed answer: {0}")]
    Malformed(#[source] hickory_proto::serialize::binary::DecodeError),
}

/// For callers whose errors are still plain text (the preflight's resolver).
impl From<WireError> for String {
    fn from(e: WireError) -> String {
        e.to_string()
    }
}

fn io(step: &'static str) -> impl FnOnce(std::io::Error) -> WireError {
    move |source| WireError::Io { step, source }
}

/// An answer, and how many packets it cost (2 when UDP was truncated).
pub(crate) struct Answer {
    pub message: Message,
    pub queries: u64,
}

/// Asks `server` for `name`/`rtype`. `recursion_desired` is false for
/// authoritative servers (their own data only) and true for resolvers.
pub(crate) async fn query(
    name: &str,
    rtype: RecordType,
    server: SocketAddr,
    recursion_desired: bool,
) -> Result<Answer, WireError> {
    let qname = Name::from_ascii(name).map_err(|source| WireError::BadName {
        name: name.to_string(),
        source,
    })?;
    let mut m = Message::query();
    m.metadata.id = rand::rng().random();
    m.metadata.recursion_desired = recursion_desired;
    m.add_query(Query::query(qname, rtype));
    m.set_edns(Edns::new());
    let bytes = m.to_vec().map_err(WireError::Encode)?;
    let mut resp = udp(&bytes, server).await?;
    let mut queries = 1;
    if resp.metadata.id != m.metadata.id {
        return Err(WireError::WrongId);
    }
    if resp.metadata.truncation {
        resp = tcp(&bytes, server).await?;
        queries += 1;
    }
    if resp.metadata.message_type != MessageType::Response {
        return Err(WireError::NotResponse);
    }
    Ok(Answer {
        message: resp,
        queries,
    })
}

async fn udp(bytes: &[u8], server: SocketAddr) -> Result<Message, WireError> {
    let bind: SocketAddr = if server.is_ipv4() {
        SocketAddr::from(([0, 0, 0, 0], 0))
    } else {
        SocketAddr::from(([0u16; 8], 0))
    };
    let sock = UdpSocket::bind(bind).await.map_err(io("UDP socket"))?;
    sock.connect(server).await.map_err(io("UDP connect"))?;
    sock.send(bytes).await.map_err(io("UDP send"))?;
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(QUERY_TIMEOUT, sock.recv(&mut buf))
        .await
        .map_err(|_| WireError::UdpTimeout)?
        .map_err(io("UDP receive"))?;
    Message::from_vec(&buf[..n]).map_err(WireError::Malformed)
}

async fn tcp(bytes: &[u8], server: SocketAddr) -> Result<Message, WireError> {
    let work = async {
        let mut s = TcpStream::connect(server)
            .await
            .map_err(io("TCP connect"))?;
        let len = u16::try_from(bytes.len()).map_err(|_| WireError::TooLarge)?;
        s.write_all(&len.to_be_bytes())
            .await
            .map_err(io("TCP send"))?;
        s.write_all(bytes).await.map_err(io("TCP send"))?;
        let n = s.read_u16().await.map_err(io("TCP receive"))?;
        let mut buf = vec![0u8; usize::from(n)];
        s.read_exact(&mut buf).await.map_err(io("TCP receive"))?;
        Message::from_vec(&buf).map_err(WireError::Malformed)
    };
    tokio::time::timeout(QUERY_TIMEOUT, work)
        .await
        .map_err(|_| WireError::TcpTimeout)?
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A loopback server that answers one query with `answer(query)`.
    async fn serve_once(answer: fn(Message) -> Message) -> SocketAddr {
        let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = sock.local_addr().unwrap();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            let (n, from) = sock.recv_from(&mut buf).await.unwrap();
            let reply = answer(Message::from_vec(&buf[..n]).unwrap());
            sock.send_to(&reply.to_vec().unwrap(), from).await.unwrap();
        });
        addr
    }

    #[tokio::test]
    async fn unusable_answers_are_typed_errors_with_the_old_texts() {
        let addr = serve_once(|mut q| {
            q.metadata.id = q.metadata.id.wrapping_add(1);
            q.metadata.message_type = MessageType::Response;
            q
        })
        .await;
        let e = query("a.test.", RecordType::TXT, addr, false)
            .await
            .err()
            .unwrap();
        assert!(matches!(e, WireError::WrongId), "{e:?}");

        // The query echoed back as is: a query, not a response.
        let addr = serve_once(|q| q).await;
        let e = query("a.test.", RecordType::TXT, addr, false)
            .await
            .err()
            .unwrap();
        assert_eq!(e.to_string(), "not a response");
        assert_eq!(String::from(e), "not a response");
    }

    #[tokio::test]
    async fn a_name_that_cannot_be_asked_is_refused_before_sending() {
        let long = format!("{}.test.", "a".repeat(64));
        let e = query(
            &long,
            RecordType::TXT,
            "127.0.0.1:9".parse().unwrap(),
            false,
        )
        .await
        .err()
        .unwrap();
        assert!(matches!(e, WireError::BadName { .. }), "{e:?}");
        assert!(
            e.to_string().starts_with(&format!("bad name {long}: ")),
            "{e}"
        );
    }
}
