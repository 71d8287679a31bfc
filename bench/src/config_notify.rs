//! Publish → listener notified: `listeners` clients listen to one config (gRPC
//! `ConfigBatchListenRequest`, or held HTTP long-polls); a writer publishes new content over
//! HTTP `changes` times; each listener records the time from just before the publish to the
//! moment it learns of the change (the `ConfigChangeNotifyRequest`, or the long-poll answer).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde_json::json;
use tokio::sync::Mutex;

use crate::grpc::{self, raw_payload};
use crate::push_latency::string_field;

/// How listeners listen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// gRPC `ConfigBatchListenRequest` + pushed `ConfigChangeNotifyRequest`.
    Grpc,
    /// HTTP v1 long-poll (`/nacos/v1/cs/configs/listener`).
    LongPoll,
}

/// Parameters of one run.
#[derive(Debug, Clone)]
pub struct ConfigNotify {
    /// HTTP address (publishes, long-polls).
    pub http: SocketAddr,
    /// gRPC address (gRPC listeners).
    pub grpc: SocketAddr,
    /// Listening clients.
    pub listeners: usize,
    /// Publishes.
    pub changes: usize,
    /// Pause between publishes.
    pub interval: Duration,
    /// Listener mode.
    pub mode: Mode,
}

/// Runs the scenario; returns (histogram in µs, notifications expected).
pub async fn run(cfg: &ConfigNotify) -> anyhow::Result<(Histogram<u64>, u64)> {
    let data_id = format!("bench-notify-{}-{:?}", std::process::id(), cfg.mode).to_lowercase();
    let http = reqwest::Client::builder().tcp_nodelay(true).build()?;
    let publish_url = format!("http://{}/nacos/v1/cs/configs", cfg.http);
    let publish = |content: String| {
        http.post(&publish_url)
            .form(&[("dataId", data_id.as_str()), ("group", "DEFAULT_GROUP"), ("content", &content)])
            .send()
    };
    publish("initial".into()).await?.error_for_status()?;
    let start = Instant::now();
    let sent_at = Arc::new(AtomicU64::new(0));
    let round = Arc::new(AtomicUsize::new(0));
    let hist = Arc::new(Mutex::new(Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?));
    let mut tasks = Vec::new();
    for _ in 0..cfg.listeners {
        let (sent_at, round, hist) = (Arc::clone(&sent_at), Arc::clone(&round), Arc::clone(&hist));
        let changes = cfg.changes;
        match cfg.mode {
            Mode::Grpc => {
                let mut conn = grpc::connect(cfg.grpc).await?;
                let listen = json!({ "listen": true, "configListenContexts": [
                    { "dataId": data_id, "group": "DEFAULT_GROUP", "tenant": "", "md5": md5_of("initial") } ] });
                let (kind, _) = conn.unary().call("ConfigBatchListenRequest", &listen).await?;
                anyhow::ensure!(kind == "ConfigChangeBatchListenResponse", "listen answered {kind}");
                tasks.push(tokio::spawn(async move {
                    let mut seen = 0;
                    let mut last_round = usize::MAX;
                    let mut local = Vec::with_capacity(changes);
                    while let Ok(Some(p)) = conn.from_server.message().await {
                        let arrived = start.elapsed().as_nanos() as u64;
                        // As in push-latency: no full parse on the shared core.
                        if p.metadata.as_ref().is_none_or(|m| m.r#type != "ConfigChangeNotifyRequest") {
                            continue;
                        }
                        let body = p.body.as_ref().map(|b| b.value.as_slice()).unwrap_or_default();
                        if let Some(id) = string_field(body, "requestId") {
                            let ack = format!(r#"{{"requestId":"{id}","resultCode":200,"errorCode":0}}"#);
                            let _ =
                                conn.to_server.try_send(raw_payload("ConfigChangeNotifyResponse", ack.into_bytes()));
                        }
                        let r = round.load(Ordering::Acquire);
                        if r != last_round {
                            last_round = r;
                            local.push((arrived.saturating_sub(sent_at.load(Ordering::Acquire)) / 1000).max(1));
                            seen += 1;
                            if seen >= changes {
                                break;
                            }
                        }
                    }
                    let mut h = hist.lock().await;
                    for v in local {
                        let _ = h.record(v);
                    }
                }));
            }
            Mode::LongPoll => {
                let client = reqwest::Client::builder().tcp_nodelay(true).timeout(Duration::from_secs(60)).build()?;
                let url = format!("http://{}/nacos/v1/cs/configs/listener", cfg.http);
                let data_id = data_id.clone();
                let content_url = publish_url.clone();
                tasks.push(tokio::spawn(async move {
                    let mut md5 = md5_of("initial");
                    let mut seen = 0;
                    while seen < changes {
                        let listening = format!("{data_id}\u{2}DEFAULT_GROUP\u{2}{md5}\u{1}");
                        let resp = client
                            .post(&url)
                            .header("Long-Pulling-Timeout", "30000")
                            .form(&[("Listening-Configs", listening.as_str())])
                            .send()
                            .await;
                        let Ok(resp) = resp else { break };
                        let body = resp.text().await.unwrap_or_default();
                        let arrived = start.elapsed().as_nanos() as u64;
                        if body.trim().is_empty() {
                            continue;
                        }
                        let _ = hist
                            .lock()
                            .await
                            .record((arrived.saturating_sub(sent_at.load(Ordering::Acquire)) / 1000).max(1));
                        seen += 1;
                        // Learn the new md5 as a client would: fetch the content.
                        let get = client
                            .get(&content_url)
                            .query(&[("dataId", data_id.as_str()), ("group", "DEFAULT_GROUP")])
                            .send()
                            .await;
                        match get {
                            Ok(r) => {
                                md5 = r
                                    .headers()
                                    .get("Content-MD5")
                                    .and_then(|v| v.to_str().ok())
                                    .unwrap_or_default()
                                    .to_owned()
                            }
                            Err(_) => break,
                        }
                    }
                }));
            }
        }
    }
    // Let every listener settle (long-polls held) before measuring.
    tokio::time::sleep(Duration::from_millis(300)).await;
    for i in 0..cfg.changes {
        round.store(i, Ordering::Release);
        sent_at.store((start.elapsed().as_nanos() as u64).max(1), Ordering::Release);
        publish(format!("change-{i}")).await?.error_for_status()?;
        tokio::time::sleep(cfg.interval).await;
    }
    for t in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(10), t).await;
    }
    let h = Arc::try_unwrap(hist).map_err(|_| anyhow::anyhow!("histogram still shared"))?.into_inner();
    Ok((h, (cfg.listeners * cfg.changes) as u64))
}

/// Lower-case hex MD5, as the server computes it.
fn md5_of(s: &str) -> String {
    registry_proto::model::md5_hex(s)
}
