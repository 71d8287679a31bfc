//! v1 heartbeat liveness for real (spec §13.1), with intervals shortened through the
//! preserved metadata keys and a fast sweeper.

use std::time::Duration;

use serde_json::Value;

use crate::harness::{Server, call, client, eventually, json};

const FAST: &str = r#"{"preserved.heart.beat.interval":"200","preserved.heart.beat.timeout":"800","preserved.ip.delete.timeout":"1600"}"#;

async fn hosts(server: &Server, service: &str) -> Vec<Value> {
    let (_, body) =
        call(client().get(server.url("/nacos/v1/ns/instance/list")).query(&[("serviceName", service)])).await;
    json(&body)["hosts"].as_array().cloned().unwrap_or_default()
}

async fn beat(server: &Server, service: &str, ip: &str, with_body: bool) -> Value {
    let mut form = vec![("serviceName", service.to_owned()), ("ip", ip.to_owned()), ("port", "9000".to_owned())];
    if with_body {
        form.push(("beat", format!(r#"{{"ip":"{ip}","port":9000,"cluster":"DEFAULT","metadata":{FAST}}}"#)));
    }
    let (status, body) = call(client().put(server.url("/nacos/v1/ns/instance/beat")).form(&form)).await;
    assert_eq!(status, 200, "{body}");
    json(&body)
}

#[tokio::test]
async fn silent_instance_turns_unhealthy_then_is_removed_and_beats_keep_it_alive() {
    let server = Server::start_with_config(Some("[naming]\nbeat_check_interval_ms = 100\n"));
    for ip in ["10.0.0.1", "10.0.0.2"] {
        let (status, _) = call(client().post(server.url("/nacos/v1/ns/instance")).form(&[
            ("serviceName", "beats"),
            ("ip", ip),
            ("port", "9000"),
            ("metadata", FAST),
        ]))
        .await;
        assert_eq!(status, 200);
    }
    // 10.0.0.1 keeps beating (light beats, no body); 10.0.0.2 stays silent.
    let keep_beating = async {
        for _ in 0..20 {
            let reply = beat(&server, "beats", "10.0.0.1", false).await;
            assert_eq!(reply["code"], 10200);
            assert_eq!(reply["clientBeatInterval"], 200);
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
    };
    let observe = async {
        let unhealthy = eventually(Duration::from_secs(10), || async {
            let h = hosts(&server, "beats").await;
            h.iter().any(|i| i["ip"] == "10.0.0.2" && i["healthy"] == false).then_some(h)
        })
        .await
        .expect("silent instance marked unhealthy");
        assert!(unhealthy.iter().any(|i| i["ip"] == "10.0.0.1" && i["healthy"] == true));
        eventually(Duration::from_secs(10), || async {
            let h = hosts(&server, "beats").await;
            (h.len() == 1 && h[0]["ip"] == "10.0.0.1").then_some(())
        })
        .await
        .expect("silent instance removed, beating one kept");
    };
    tokio::join!(keep_beating, observe);

    // The removed instance is unknown now: a light beat gets 20404, a full beat re-registers it.
    assert_eq!(beat(&server, "beats", "10.0.0.2", false).await["code"], 20404);
    assert_eq!(beat(&server, "beats", "10.0.0.2", true).await["code"], 10200);
    assert!(hosts(&server, "beats").await.iter().any(|i| i["ip"] == "10.0.0.2" && i["healthy"] == true));
}

#[tokio::test]
async fn a_beat_revives_an_unhealthy_instance() {
    let server = Server::start_with_config(Some("[naming]\nbeat_check_interval_ms = 100\n"));
    let slow = r#"{"preserved.heart.beat.interval":"200","preserved.heart.beat.timeout":"500","preserved.ip.delete.timeout":"60000"}"#;
    let (status, _) = call(client().post(server.url("/nacos/v1/ns/instance")).form(&[
        ("serviceName", "revive"),
        ("ip", "10.0.0.3"),
        ("port", "9000"),
        ("metadata", slow),
    ]))
    .await;
    assert_eq!(status, 200);
    eventually(Duration::from_secs(10), || async {
        hosts(&server, "revive").await.first().is_some_and(|i| i["healthy"] == false).then_some(())
    })
    .await
    .expect("marked unhealthy");
    assert_eq!(beat(&server, "revive", "10.0.0.3", false).await["code"], 10200);
    assert_eq!(hosts(&server, "revive").await[0]["healthy"], true);
}
