//! Authoritative DNS servers (UDP and TCP) for the public zones Cloud DNS holds.
//!
//! Server `i` stands for the zone's `i`-th name server and lags behind the API by
//! `shared.admin.dns_lags()[i]`: it answers from the newest version of the zone
//! applied at least that long ago (see [`crate::dns::visible_zone`]).
//! Answers are authoritative (AA set, RA clear); names outside every served zone
//! get REFUSED, as Google's servers answer.

use std::net::SocketAddr;
use std::str::FromStr;
use std::time::{Duration, Instant};

use hickory_proto::op::{Edns, Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::dns::{RecordSet, ZoneView, visible_zone};
use crate::state::Shared;

/// Listener start-up result: addresses in name-server order and their tasks.
pub type Started = (Vec<SocketAddr>, Vec<JoinHandle<()>>);

/// How many CNAMEs an answer follows inside one zone.
const MAX_CNAME_CHAIN: usize = 8;

/// The EDNS payload size we advertise (the DNS flag day 2020 value).
const EDNS_PAYLOAD: u16 = 1232;

/// An idle TCP connection is closed after this long.
const TCP_IDLE: Duration = Duration::from_secs(30);

/// Starts `count` name servers; the first on `first`, the others on free ports of the
/// same IP (or on `first.port + i` when `first.port` is not 0). Each answers on UDP
/// and TCP on the same port.
pub async fn start(
    shared: Shared,
    first: SocketAddr,
    count: usize,
    shutdown: watch::Receiver<bool>,
) -> Result<Started, (SocketAddr, std::io::Error)> {
    let mut addrs = Vec::new();
    let mut tasks = Vec::new();
    for i in 0..count {
        let want = if first.port() == 0 {
            SocketAddr::new(first.ip(), 0)
        } else {
            let port = u16::try_from(usize::from(first.port()) + i).map_err(|_| {
                (
                    first,
                    std::io::Error::new(std::io::ErrorKind::InvalidInput, "port out of range"),
                )
            })?;
            SocketAddr::new(first.ip(), port)
        };
        let (udp, tcp) = bind_pair(want).await.map_err(|e| (want, e))?;
        let addr = udp.local_addr().map_err(|e| (want, e))?;
        addrs.push(addr);
        tasks.push(tokio::spawn(serve_udp(
            shared.clone(),
            i,
            udp,
            shutdown.clone(),
        )));
        tasks.push(tokio::spawn(serve_tcp(
            shared.clone(),
            i,
            tcp,
            shutdown.clone(),
        )));
    }
    Ok((addrs, tasks))
}

/// Binds UDP and TCP on the same port. With port 0 the UDP port is picked first and
/// may be taken on TCP, so try a few times.
async fn bind_pair(want: SocketAddr) -> std::io::Result<(UdpSocket, TcpListener)> {
    let mut last = None;
    for _ in 0..20 {
        let udp = UdpSocket::bind(want).await?;
        let addr = udp.local_addr()?;
        match TcpListener::bind(addr).await {
            Ok(tcp) => return Ok((udp, tcp)),
            Err(e) if want.port() == 0 => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| std::io::Error::other("cannot bind UDP and TCP on one port")))
}

async fn serve_udp(
    shared: Shared,
    server: usize,
    sock: UdpSocket,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut buf = vec![0u8; 65535];
    loop {
        tokio::select! {
            _ = stopped(&mut shutdown) => break,
            r = sock.recv_from(&mut buf) => {
                let Ok((n, peer)) = r else { continue };
                if let Some(reply) = handle(&shared, server, &buf[..n], true) {
                    let _ = sock.send_to(&reply, peer).await;
                }
            }
        }
    }
}

async fn serve_tcp(
    shared: Shared,
    server: usize,
    listener: TcpListener,
    mut shutdown: watch::Receiver<bool>,
) {
    let template = shutdown.clone();
    loop {
        tokio::select! {
            _ = stopped(&mut shutdown) => break,
            r = listener.accept() => {
                let Ok((stream, _)) = r else { continue };
                let shared = shared.clone();
                let rx = template.clone();
                tokio::spawn(serve_tcp_conn(shared, server, stream, rx));
            }
        }
    }
}

/// One TCP connection: any number of length-prefixed queries (RFC 7766).
async fn serve_tcp_conn(
    shared: Shared,
    server: usize,
    mut stream: TcpStream,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let read = async {
            let len = stream.read_u16().await?;
            let mut buf = vec![0u8; usize::from(len)];
            stream.read_exact(&mut buf).await?;
            Ok::<_, std::io::Error>(buf)
        };
        let buf = tokio::select! {
            _ = stopped(&mut shutdown) => return,
            r = tokio::time::timeout(TCP_IDLE, read) => match r {
                Ok(Ok(buf)) => buf,
                _ => return,
            },
        };
        let Some(reply) = handle(&shared, server, &buf, false) else {
            return;
        };
        let Ok(len) = u16::try_from(reply.len()) else {
            return;
        };
        let mut out = Vec::with_capacity(reply.len() + 2);
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(&reply);
        if stream.write_all(&out).await.is_err() {
            return;
        }
    }
}

/// Resolves once shutdown is requested (or the emulator is gone).
async fn stopped(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|stop| *stop).await;
}

/// Decodes a query and encodes the answer; `None` when nothing sensible can be sent.
fn handle(shared: &Shared, server: usize, bytes: &[u8], udp: bool) -> Option<Vec<u8>> {
    let req = match Message::from_vec(bytes) {
        Ok(m) => m,
        Err(_) => {
            // Answer FORMERR when at least the id is readable.
            let id = u16::from_be_bytes([*bytes.first()?, *bytes.get(1)?]);
            return Message::error_msg(id, OpCode::Query, ResponseCode::FormErr)
                .to_vec()
                .ok();
        }
    };
    if req.metadata.message_type != MessageType::Query {
        return None;
    }
    let resp = answer(shared, server, &req);
    let bytes = match resp.to_vec() {
        Ok(b) => b,
        Err(_) => {
            let mut fail = Message::error_msg(
                req.metadata.id,
                req.metadata.op_code,
                ResponseCode::ServFail,
            );
            fail.add_queries(req.queries.iter().cloned());
            return fail.to_vec().ok();
        }
    };
    let limit = if udp {
        match &req.edns {
            Some(e) => usize::from(e.max_payload().clamp(512, EDNS_PAYLOAD)),
            None => 512,
        }
    } else {
        usize::from(u16::MAX)
    };
    if bytes.len() > limit {
        // Too big for this transport: header and question only, TC set, so the
        // client retries over TCP.
        return resp.truncate().to_vec().ok();
    }
    Some(bytes)
}

/// Builds the response to one query as name server `server` sees the zones now.
pub fn answer(shared: &Shared, server: usize, req: &Message) -> Message {
    let mut resp = Message::response(req.metadata.id, req.metadata.op_code);
    resp.metadata.recursion_desired = req.metadata.recursion_desired;
    resp.metadata.checking_disabled = req.metadata.checking_disabled;
    resp.metadata.recursion_available = false;
    if req.edns.is_some() {
        let mut e = Edns::new();
        e.set_max_payload(EDNS_PAYLOAD);
        resp.set_edns(e);
    }
    if req.metadata.op_code != OpCode::Query {
        resp.metadata.response_code = ResponseCode::NotImp;
        return resp;
    }
    let [query] = req.queries.as_slice() else {
        resp.metadata.response_code = ResponseCode::FormErr;
        return resp;
    };
    resp.add_query(query.clone());
    if query.query_class() != DNSClass::IN && query.query_class() != DNSClass::ANY {
        resp.metadata.response_code = ResponseCode::Refused;
        return resp;
    }
    let qname = normalise(query.name());
    let lag = shared
        .admin
        .dns_lags()
        .get(server)
        .copied()
        .unwrap_or_default();
    let view = {
        let world = shared.world();
        visible_zone(&world, &qname, lag, Instant::now())
    };
    let Some(view) = view else {
        resp.metadata.response_code = ResponseCode::Refused;
        return resp;
    };
    resp.metadata.authoritative = true;
    let qtype = query.query_type();

    let mut owner = qname.clone();
    let mut answers = Vec::new();
    for _ in 0..MAX_CNAME_CHAIN {
        let sets = sets_at(&view, &owner, &qname);
        if sets.is_empty() {
            if owner == qname {
                if !name_exists(&view, &qname) {
                    resp.metadata.response_code = ResponseCode::NXDomain;
                }
                resp.add_authorities(soa_for_negative(&view));
            }
            break;
        }
        let want: Vec<&RecordSet> = sets
            .iter()
            .filter(|r| qtype == RecordType::ANY || r.rtype == qtype.to_string())
            .collect();
        if !want.is_empty() {
            for r in want {
                answers.extend(to_records(r, query.name(), &owner));
            }
            break;
        }
        if let Some(cname) = sets.iter().find(|r| r.rtype == "CNAME") {
            let recs = to_records(cname, query.name(), &owner);
            let target = recs.iter().find_map(|r| match &r.data {
                RData::CNAME(c) => Some(normalise(&c.0)),
                _ => None,
            });
            answers.extend(recs);
            match target {
                // Follow the alias while it stays inside this zone.
                Some(t) if in_zone(&t, &view.apex) => {
                    owner = t;
                    continue;
                }
                _ => break,
            }
        }
        // The name exists with other types only: NOERROR, no data, SOA in authority.
        if answers.is_empty() {
            resp.add_authorities(soa_for_negative(&view));
        }
        break;
    }
    resp.add_answers(answers);
    resp
}

fn normalise(name: &Name) -> String {
    let mut s = name.to_lowercase().to_ascii();
    if !s.ends_with('.') {
        s.push('.');
    }
    s
}

fn in_zone(name: &str, apex: &str) -> bool {
    name == apex || name.ends_with(&format!(".{apex}"))
}

/// The record sets owned by `owner`; when there are none and `owner` is the queried
/// name, those of the matching wildcard (RFC 4592: `*.<closest encloser>`).
fn sets_at(view: &ZoneView, owner: &str, qname: &str) -> Vec<RecordSet> {
    let exact: Vec<RecordSet> = view
        .records
        .range((owner.to_string(), String::new())..)
        .take_while(|((n, _), _)| n == owner)
        .map(|(_, r)| r.clone())
        .collect();
    if !exact.is_empty() || owner != qname || name_exists(view, owner) {
        return exact;
    }
    let mut ancestor = owner;
    while let Some((_, parent)) = ancestor.split_once('.') {
        if parent.is_empty() || !in_zone(parent, &view.apex) {
            break;
        }
        if parent == view.apex || name_exists(view, parent) {
            let wild = format!("*.{parent}");
            return view
                .records
                .range((wild.clone(), String::new())..)
                .take_while(|((n, _), _)| *n == wild)
                .map(|(_, r)| r.clone())
                .collect();
        }
        ancestor = parent;
    }
    Vec::new()
}

/// A name exists when it owns records or has descendants that do (an empty
/// non-terminal answers NODATA, not NXDOMAIN).
fn name_exists(view: &ZoneView, name: &str) -> bool {
    let below = format!(".{name}");
    view.records
        .keys()
        .any(|(n, _)| n == name || n.ends_with(&below))
}

/// The zone's SOA for the authority section of a negative answer; its TTL is the
/// lesser of the SOA's TTL and its MINIMUM field (RFC 2308).
fn soa_for_negative(view: &ZoneView) -> Vec<Record> {
    let Some(soa) = view.records.get(&(view.apex.clone(), "SOA".to_string())) else {
        return Vec::new();
    };
    let Ok(owner) = Name::from_ascii(&soa.name) else {
        return Vec::new();
    };
    let mut out = to_records(soa, &owner, &view.apex);
    for r in &mut out {
        if let RData::SOA(s) = &r.data {
            r.ttl = r.ttl.min(s.minimum);
        }
    }
    out
}

/// The wire records of a record set, owned by `qname` as the client spelled it
/// when `owner` is the queried name, else by `owner`.
fn to_records(r: &RecordSet, qname: &Name, owner: &str) -> Vec<Record> {
    let name = if normalise(qname) == owner {
        qname.clone()
    } else {
        match Name::from_ascii(owner) {
            Ok(n) => n,
            Err(_) => return Vec::new(),
        }
    };
    let Ok(rtype) = RecordType::from_str(&r.rtype) else {
        return Vec::new();
    };
    let ttl = u32::try_from(r.ttl).unwrap_or(0);
    r.rrdatas
        .iter()
        .filter_map(|d| RData::try_from_str(rtype, d).ok())
        .map(|data| Record::from_rdata(name.clone(), ttl, data))
        .collect()
}
