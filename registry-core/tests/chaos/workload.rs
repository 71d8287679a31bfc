//! The clients: persistent registrations over HTTP v1 and v2, config compare-and-swap
//! increments with linearizable and local reads, ephemeral instances over gRPC sessions that
//! also subscribe to their service, and a monitor of each live session's instance. Every
//! operation goes into the history; none is retried (a retry would hide an outcome).

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use registry_proto::client::{Event, Session, SessionConfig, Setup};
use registry_proto::contract::ports::{DEFAULT_HTTP, GRPC_OFFSET};
use registry_proto::model::ServiceKey;
use registry_proto::wire::naming::WireInstance;
use serde_json::Value;

use crate::harness::md5_hex;
use crate::history::{History, Kind, Op, Outcome};

/// Persistent instances go here.
pub(crate) const PERSISTENT_SERVICE: &str = "chaos-persistent";
/// Ephemeral (session) instances go here; every session subscribes to it.
pub(crate) const EPHEMERAL_SERVICE: &str = "chaos-ephemeral";
/// Config keys (group `DEFAULT_GROUP`); each holds a counter that only CAS increments change,
/// so the committed values of a key rise one by one and any read can be placed by its value.
pub(crate) const KEYS: [&str; 3] = ["chaos-k0", "chaos-k1", "chaos-k2"];
/// A client gives up on a request after this (the server answers writes within 5 s).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(6);

/// What every client shares.
pub(crate) struct Ctx {
    pub(crate) history: Arc<History>,
    /// Members' current addresses (the nemesis updates them when one moves).
    pub(crate) addrs: RwLock<Vec<Ipv4Addr>>,
    pub(crate) stop: AtomicBool,
    pub(crate) seed: u64,
    http: reqwest::Client,
}

impl Ctx {
    pub(crate) fn new(history: Arc<History>, addrs: Vec<Ipv4Addr>, seed: u64) -> Self {
        let http = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .connect_timeout(Duration::from_secs(2))
            .build()
            .expect("client");
        Self { history, addrs: RwLock::new(addrs), stop: AtomicBool::new(false), seed, http }
    }

    fn url(&self, member: usize, path: &str) -> String {
        format!("http://{}:{DEFAULT_HTTP}{path}", self.addrs.read().unwrap()[member])
    }

    pub(crate) fn members(&self) -> usize {
        self.addrs.read().unwrap().len()
    }

    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    fn rng(&self, salt: u64) -> fastrand::Rng {
        fastrand::Rng::with_seed(self.seed ^ salt.wrapping_mul(0x9E37_79B9_7F4A_7C15))
    }
}

/// The v2 answer's `code`, if the body is the v2 envelope.
fn v2_code(body: &str) -> Option<i64> {
    serde_json::from_str::<Value>(body).ok()?["code"].as_i64()
}

async fn send(req: reqwest::RequestBuilder) -> Result<(u16, String), String> {
    let resp = req.send().await.map_err(|e| e.to_string())?;
    let status = resp.status().as_u16();
    Ok((status, resp.text().await.map_err(|e| e.to_string())?))
}

/// Registers fresh persistent instances and deregisters some it registered; client `p` speaks
/// v1 when even, v2 when odd.
pub(crate) async fn persistent_client(ctx: Arc<Ctx>, p: usize) {
    let mut rng = ctx.rng(100 + p as u64);
    let (mut registered, mut n) = (Vec::<String>::new(), 0u32);
    let v1 = p.is_multiple_of(2);
    let path = if v1 { "/nacos/v1/ns/instance" } else { "/nacos/v2/ns/instance" };
    while !ctx.stopped() {
        let m = rng.usize(..ctx.members());
        let deregister = !registered.is_empty() && rng.f32() < 0.2;
        let ip = if deregister {
            registered.swap_remove(rng.usize(..registered.len()))
        } else {
            n += 1;
            format!("10.{}.{}.{}", 50 + p, n / 250, n % 250 + 1)
        };
        let form = [("serviceName", PERSISTENT_SERVICE), ("ip", &ip), ("port", "80"), ("ephemeral", "false")];
        let req = if deregister {
            ctx.http.delete(ctx.url(m, path)).query(&form)
        } else {
            ctx.http.post(ctx.url(m, path)).form(&form)
        };
        let invoke = ctx.history.now();
        let answer = send(req).await;
        let acked = match &answer {
            Ok((200, body)) => v1 || v2_code(body) == Some(0),
            _ => false,
        };
        let outcome = if acked { Outcome::Ok } else { Outcome::Unknown };
        if acked && !deregister {
            registered.push(ip.clone());
        }
        ctx.history.push(Op {
            process: format!("persist-{p}"),
            kind: if deregister { Kind::Deregister } else { Kind::Register },
            key: PERSISTENT_SERVICE.into(),
            value: Some(format!("{ip}:80")),
            expect: None,
            member: Some(m as u64 + 1),
            invoke_us: invoke,
            complete_us: ctx.history.now(),
            outcome,
            detail: format!("{answer:?}"),
        });
        tokio::time::sleep(Duration::from_millis(rng.u64(20..80))).await;
    }
}

/// A config read on member `m`: `Ok(Some(content))`, `Ok(None)` (not found) or an error.
async fn read_config(ctx: &Ctx, m: usize, key: &str, linearizable: bool) -> Result<Option<String>, String> {
    let mut query = vec![("dataId", key), ("group", "DEFAULT_GROUP")];
    if linearizable {
        query.push(("consistency", "linearizable"));
    }
    match send(ctx.http.get(ctx.url(m, "/nacos/v1/cs/configs")).query(&query)).await? {
        (200, body) => Ok(Some(body)),
        (404, _) => Ok(None),
        (status, body) => Err(format!("{status} {body}")),
    }
}

/// Records one config read (linearizable or local) on member `m`.
pub(crate) async fn recorded_read(
    ctx: &Ctx,
    process: &str,
    m: usize,
    key: &str,
    linearizable: bool,
) -> Option<Option<String>> {
    let invoke = ctx.history.now();
    let answer = read_config(ctx, m, key, linearizable).await;
    let (outcome, value) = match &answer {
        Ok(v) => (Outcome::Ok, v.clone()),
        Err(_) => (Outcome::Fail, None),
    };
    ctx.history.push(Op {
        process: process.into(),
        kind: if linearizable { Kind::ReadLinearizable } else { Kind::ReadLocal },
        key: key.into(),
        value,
        expect: None,
        member: Some(m as u64 + 1),
        invoke_us: invoke,
        complete_us: ctx.history.now(),
        outcome,
        detail: answer.as_ref().err().cloned().unwrap_or_default(),
    });
    answer.ok()
}

/// Reads and CAS-increments the counters.
pub(crate) async fn config_client(ctx: Arc<Ctx>, c: usize) {
    let mut rng = ctx.rng(200 + c as u64);
    let process = format!("config-{c}");
    let mut known: BTreeMap<&str, String> = BTreeMap::new();
    while !ctx.stopped() {
        let key = KEYS[rng.usize(..KEYS.len())];
        let m = rng.usize(..ctx.members());
        let r = rng.f32();
        match known.get(key).cloned() {
            Some(expect) if r >= 0.6 => {
                let new = (expect.parse::<u64>().unwrap_or(0) + 1).to_string();
                let cas_md5 = md5_hex(&expect);
                let form = [("dataId", key), ("group", "DEFAULT_GROUP"), ("content", &new), ("casMd5", &cas_md5)];
                let invoke = ctx.history.now();
                let answer = send(ctx.http.post(ctx.url(m, "/nacos/v2/cs/config")).form(&form)).await;
                let outcome = match &answer {
                    Ok((200, body)) if v2_code(body) == Some(0) => Outcome::Ok,
                    // Refused by the state when the Raft entry applied: the guard failed.
                    Ok((_, body)) if v2_code(body) == Some(20005) => Outcome::Fail,
                    _ => Outcome::Unknown,
                };
                match outcome {
                    Outcome::Ok => drop(known.insert(key, new.clone())),
                    _ => drop(known.remove(key)),
                }
                ctx.history.push(Op {
                    process: process.clone(),
                    kind: Kind::Cas,
                    key: key.into(),
                    value: Some(new),
                    expect: Some(expect),
                    member: Some(m as u64 + 1),
                    invoke_us: invoke,
                    complete_us: ctx.history.now(),
                    outcome,
                    detail: format!("{answer:?}"),
                });
            }
            _ if r < 0.25 => {
                recorded_read(&ctx, &process, m, key, false).await;
            }
            _ => {
                if let Some(Some(v)) = recorded_read(&ctx, &process, m, key, true).await {
                    known.insert(key, v);
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(rng.u64(10..50))).await;
    }
}

/// An ephemeral client: a gRPC session with one instance, subscribed to the service, and the
/// latest view its pushes gave it.
pub(crate) struct EphemeralClient {
    pub(crate) session: Session,
    /// `ip:port` of its own instance.
    pub(crate) instance: String,
    /// The service as the latest push (or subscribe answer) showed it.
    pub(crate) view: Arc<Mutex<Option<BTreeSet<String>>>>,
}

/// The ephemeral service's key.
pub(crate) fn ephemeral_key() -> ServiceKey {
    ServiceKey::new("public", "DEFAULT_GROUP", EPHEMERAL_SERVICE).expect("valid service key")
}

/// Starts client `i` (servers rotated so the clients spread over the members), publishes its
/// instance (retrying until acknowledged, bounded) and subscribes.
pub(crate) async fn ephemeral_client(ctx: &Ctx, i: usize, mut servers: Vec<std::net::SocketAddr>) -> EphemeralClient {
    let live = ctx.members().min(servers.len());
    servers[..live].rotate_left(i % live.max(1));
    let mut config = SessionConfig::new(servers, Setup::new("chaos-client", "naming"));
    config.backoff_max = Duration::from_secs(1);
    let (session, mut events) = Session::start(config).expect("session");
    let ip = format!("10.200.0.{}", i + 1);
    let instance = format!("{ip}:8080");
    let view = Arc::new(Mutex::new(None));
    let v = Arc::clone(&view);
    tokio::spawn(async move {
        while let Some(e) = events.recv().await {
            if let Event::Service(info) = e {
                *v.lock().unwrap() = Some(info.hosts.iter().map(|h| format!("{}:{}", h.ip, h.port)).collect());
            }
        }
    });
    let wire = WireInstance { ip: Some(ip), port: 8080, ..Default::default() };
    let key = ephemeral_key();
    let invoke = ctx.history.now();
    let mut answer = session.register(&key, wire.clone()).await;
    // The session keeps the instance for redo even when this call failed; wait for an ack.
    for _ in 0..20 {
        if answer.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
        answer = session.register(&key, wire.clone()).await;
    }
    ctx.history.push(Op {
        process: format!("eph-{i}"),
        kind: Kind::EphemeralRegister,
        key: EPHEMERAL_SERVICE.into(),
        value: Some(instance.clone()),
        expect: None,
        member: None,
        invoke_us: invoke,
        complete_us: ctx.history.now(),
        outcome: if answer.is_ok() { Outcome::Ok } else { Outcome::Unknown },
        detail: format!("{answer:?}"),
    });
    if let Ok(info) = session.subscribe(&key, "").await {
        let mut view = view.lock().unwrap();
        if view.is_none() {
            *view = Some(info.hosts.iter().map(|h| format!("{}:{}", h.ip, h.port)).collect());
        }
    }
    EphemeralClient { session, instance, view }
}

/// The ephemeral service's instances (`ip:port`) in member `m`'s view.
pub(crate) async fn ephemeral_view(ctx: &Ctx, m: usize) -> Option<BTreeSet<String>> {
    service_view(ctx, m, EPHEMERAL_SERVICE).await
}

/// A service's instances (`ip:port`) in member `m`'s view (HTTP v1 list).
pub(crate) async fn service_view(ctx: &Ctx, m: usize, service: &str) -> Option<BTreeSet<String>> {
    let req = ctx.http.get(ctx.url(m, "/nacos/v1/ns/instance/list")).query(&[("serviceName", service)]);
    // Short: a paused member must not hold the monitor up.
    let (status, body) = send(req.timeout(Duration::from_secs(2))).await.ok()?;
    if status != 200 {
        return None;
    }
    let body: Value = serde_json::from_str(&body).ok()?;
    Some(
        body["hosts"]
            .as_array()?
            .iter()
            .filter_map(|h| Some(format!("{}:{}", h["ip"].as_str()?, h["port"].as_u64()?)))
            .collect(),
    )
}

/// Once a second, asks the member each session is connected to whether the session's own
/// instance is in its view; records the answer (no answer: nothing is recorded).
pub(crate) async fn presence_monitor(ctx: Arc<Ctx>, clients: Arc<Vec<EphemeralClient>>) {
    let member_of = |addr: std::net::SocketAddr| {
        let addrs = ctx.addrs.read().unwrap();
        (addr.port() == DEFAULT_HTTP + GRPC_OFFSET).then(|| addrs.iter().position(|a| *a == addr.ip()))?
    };
    while !ctx.stopped() {
        for (i, c) in clients.iter().enumerate() {
            let Some(m) = c.session.connected_to().and_then(member_of) else { continue };
            let invoke = ctx.history.now();
            let Some(view) = ephemeral_view(&ctx, m).await else { continue };
            ctx.history.push(Op {
                process: format!("eph-{i}"),
                kind: Kind::Presence,
                key: EPHEMERAL_SERVICE.into(),
                value: Some(view.contains(&c.instance).to_string()),
                expect: None,
                member: Some(m as u64 + 1),
                invoke_us: invoke,
                complete_us: ctx.history.now(),
                outcome: Outcome::Ok,
                detail: String::new(),
            });
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}
