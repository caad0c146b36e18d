//! Forwarding a command to the service that owns its entity type, verbatim (method, path and
//! query, body, content type), and relaying the answer (status, body, content type and the
//! versions header). A service that cannot be reached is reported as such, never as a 500.
//!
//! When the owning service runs in the same process (`ordershop up`), the command is not sent
//! over loopback HTTP: it goes through the same entry point the service's HTTP route calls
//! ([`crate::dispatch`]), so the answer is the same, minus a hop, and comes back typed.

use crate::commands::CommandService;
use crate::config::{Config, Role};
use crate::dispatch::{self, Answer, Meta, Op};
use crate::error::{ApiError, Unreachable};
use crate::request_id::RequestId;
use crate::versions::{parse_header, VersionStamp};
use actix_web::web::Bytes;
use ordershop_domain::EntityKind;
use std::collections::BTreeMap;
use std::time::Duration;

/// How long connecting to a service may take: short, so a stopped service is reported quickly.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);
/// How long a service may take to answer a command.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Response headers relayed back to the client besides the body. The service's versions header
/// is internal: the gateway reads it ([`Relayed::versions`]) and never passes it on.
const RELAYED_HEADERS: [&str; 5] = [
    "content-type",
    "etag",
    crate::headers::IDEMPOTENT_REPLAYED,
    "retry-after",
    "allow",
];

/// A command as the gateway received it.
#[derive(Debug, Clone)]
pub struct Outgoing<'a> {
    pub method: &'a str,
    pub path_and_query: &'a str,
    pub content_type: Option<&'a [u8]>,
    pub body: Bytes,
    /// Forwarded as `X-Request-Id`, so the service logs and records the same id.
    pub request_id: Option<crate::request_id::RequestId>,
    /// The client's `Idempotency-Key`, forwarded as is (the service validates it).
    pub idempotency_key: Option<&'a [u8]>,
    /// The client's `If-Match`, forwarded as is (the service parses and honours it).
    pub if_match: Option<&'a [u8]>,
    /// The path's entity id, for `PUT` and `DELETE` (the gateway's route parsed it).
    pub id: Option<uuid::Uuid>,
}

impl Outgoing<'_> {
    fn path(&self) -> &str {
        self.path_and_query
            .split_once('?')
            .map_or(self.path_and_query, |(path, _)| path)
    }
}

/// A service's answer.
#[derive(Debug, Clone)]
pub struct Relayed {
    pub status: u16,
    /// The relayed headers that were present, lower-case names.
    pub headers: Vec<(&'static str, Vec<u8>)>,
    /// The service's internal versions header, for read-your-writes; not for the client.
    pub versions: Option<Vec<u8>>,
    pub body: Bytes,
}

impl Relayed {
    /// An answer from its status, a lookup of its headers and its body: keeps the relayed
    /// headers and the internal versions header apart.
    fn new(status: u16, header: impl Fn(&str) -> Option<Vec<u8>>, body: Bytes) -> Self {
        Self {
            status,
            headers: RELAYED_HEADERS
                .into_iter()
                .filter_map(|name| Some((name, header(name)?)))
                .collect(),
            versions: header(crate::headers::VERSIONS),
            body,
        }
    }

    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_slice())
    }

    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

/// The owning service's answer: relayed from its HTTP answer, or typed, when it ran here.
#[derive(Debug)]
pub enum Forwarded {
    Relayed(Relayed),
    InProcess(Result<Answer, ApiError>),
}

impl Forwarded {
    pub fn is_success(&self) -> bool {
        match self {
            Forwarded::Relayed(relayed) => relayed.is_success(),
            Forwarded::InProcess(answer) => answer.is_ok(),
        }
    }

    /// The versions a successful command produced (none when it failed, or when a service
    /// sent no versions header); an error names what was unreadable in the header.
    pub fn versions(&self) -> Result<Vec<VersionStamp>, String> {
        match self {
            Forwarded::InProcess(Ok(answer)) => Ok(answer.written.versions.clone()),
            Forwarded::InProcess(Err(_)) => Ok(Vec::new()),
            Forwarded::Relayed(relayed) => match relayed.versions.as_deref() {
                None => Ok(Vec::new()),
                Some(header) => std::str::from_utf8(header)
                    .map_err(|e| e.to_string())
                    .and_then(parse_header),
            },
        }
    }
}

/// Sends commands to the domain services: over HTTP, or in-process to the `local` ones.
#[derive(Clone)]
pub struct Forwarder {
    client: reqwest::Client,
    peers: BTreeMap<Role, String>,
    /// The command service of this process, and the domain services whose commands it runs.
    local: Option<(CommandService, Vec<Role>)>,
}

impl Forwarder {
    pub fn new(config: &Config) -> Result<Self, reqwest::Error> {
        let client = reqwest::Client::builder()
            .default_headers(peer_headers(config))
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            .pool_idle_timeout(Duration::from_secs(20))
            // The services are addressed directly; an HTTP_PROXY meant for the outside world
            // must not capture them.
            .no_proxy()
            .build()?;
        let peers = Role::ALL
            .into_iter()
            .filter_map(|role| Some((role, config.peer_url(role)?.to_owned())))
            .collect();
        Ok(Self {
            client,
            peers,
            local: None,
        })
    }

    /// Runs the commands of these domain services with `service`, in this process, instead of
    /// calling them over HTTP.
    pub fn with_local(mut self, service: CommandService, roles: Vec<Role>) -> Self {
        self.local = Some((service, roles));
        self
    }

    pub async fn forward(
        &self,
        owner: Role,
        request: Outgoing<'_>,
    ) -> Result<Forwarded, Unreachable> {
        if let (Some((service, roles)), Some(kind)) = (&self.local, owner.commands()) {
            if roles.contains(&owner) {
                return Ok(Forwarded::InProcess(
                    in_process(service, kind, request).await,
                ));
            }
        }
        let unreachable = |source| Unreachable {
            role: owner,
            source,
        };
        // Peers are known for every role a route names (the table maps kinds to domain
        // services), so a missing one is a programming error reported as unreachable.
        let base = self
            .peers
            .get(&owner)
            .map(String::as_str)
            .unwrap_or("http://invalid.");
        // actix parsed the method, so it is a valid token (and only the routes' POST, PUT and
        // DELETE get here): the fallback is never taken.
        let method =
            reqwest::Method::from_bytes(request.method.as_bytes()).unwrap_or(reqwest::Method::POST);
        let mut builder = self
            .client
            .request(method, format!("{base}{}", request.path_and_query))
            .body(request.body);
        if let Some(content_type) = request.content_type {
            builder = builder.header(reqwest::header::CONTENT_TYPE, content_type);
        }
        if let Some(id) = &request.request_id {
            builder = builder.header(crate::headers::REQUEST_ID, id.as_str());
        }
        if let Some(key) = request.idempotency_key {
            builder = builder.header(crate::headers::IDEMPOTENCY_KEY, key);
        }
        if let Some(tags) = request.if_match {
            builder = builder.header(crate::headers::IF_MATCH, tags);
        }
        let response = builder.send().await.map_err(unreachable)?;
        let status = response.status().as_u16();
        let head = response.headers().clone();
        let body = response.bytes().await.map_err(unreachable)?;
        Ok(Forwarded::Relayed(Relayed::new(
            status,
            |name| head.get(name).map(|v| v.as_bytes().to_vec()),
            body,
        )))
    }
}

/// Runs the command through the owning service's entry point in this process.
async fn in_process(
    service: &CommandService,
    kind: EntityKind,
    request: Outgoing<'_>,
) -> Result<Answer, ApiError> {
    let path = request.path();
    let op = Op::of(request.method, request.id, path)?;
    let body = match op {
        Op::Create | Op::Update(_) => Some(crate::wire::parse_json(&request.body)?),
        Op::Delete(_) => None,
    };
    let meta = Meta {
        path,
        request_id: request.request_id.as_ref().map(RequestId::as_str),
        idempotency_key: request.idempotency_key,
        if_match: request.if_match,
    };
    dispatch::dispatch(service, kind, op, body, meta).await
}

/// The headers the gateway sends with every request to a peer service: its token, if set,
/// marked sensitive so that no HTTP-client log shows it.
pub fn peer_headers(config: &Config) -> reqwest::header::HeaderMap {
    let mut headers = reqwest::header::HeaderMap::new();
    if let Some(token) = &config.api_token {
        // A configured token is printable ASCII (checked when read), so this never fails.
        if let Ok(mut value) =
            reqwest::header::HeaderValue::from_str(&format!("Bearer {}", token.expose()))
        {
            value.set_sensitive(true);
            headers.insert(reqwest::header::AUTHORIZATION, value);
        }
    }
    headers
}
