//! Export and import of a namespace's configs as a zip (Nacos v2 export format).

use std::io::{Cursor, Read};

use crate::harness::{Server, call, client, json};

async fn publish(server: &Server, tenant: &str, group: &str, data_id: &str, content: &str, config_type: &str) {
    let (status, body) = call(client().post(server.url("/nacos/v1/cs/configs")).form(&[
        ("tenant", tenant),
        ("group", group),
        ("dataId", data_id),
        ("content", content),
        ("type", config_type),
        ("appName", "shop"),
    ]))
    .await;
    assert_eq!((status, body.as_str()), (200, "true"));
}

async fn export(server: &Server, tenant: &str) -> Vec<u8> {
    let resp = client()
        .get(server.url("/nacos/v1/cs/configs"))
        .query(&[("exportV2", "true"), ("tenant", tenant)])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "application/zip");
    resp.bytes().await.unwrap().to_vec()
}

async fn import(server: &Server, namespace: &str, policy: &str, zip: Vec<u8>) -> (u16, serde_json::Value) {
    let part = reqwest::multipart::Part::bytes(zip).file_name("export.zip");
    let form = reqwest::multipart::Form::new().part("file", part);
    let (status, body) = call(
        client()
            .post(server.url("/nacos/v1/cs/configs"))
            .query(&[("import", "true"), ("namespace", namespace), ("policy", policy)])
            .multipart(form),
    )
    .await;
    (status, if status == 200 { json(&body) } else { serde_json::Value::String(body) })
}

async fn content(server: &Server, tenant: &str, group: &str, data_id: &str) -> (u16, String) {
    call(client().get(server.url("/nacos/v1/cs/configs")).query(&[
        ("tenant", tenant),
        ("group", group),
        ("dataId", data_id),
    ]))
    .await
}

#[tokio::test]
async fn export_holds_every_config_of_the_namespace_with_its_metadata() {
    let server = Server::start();
    publish(&server, "dev", "G1", "a.yaml", "a: 1\n", "yaml").await;
    publish(&server, "dev", "G2", "b.json", "{}", "json").await;
    publish(&server, "other", "G1", "c", "not exported", "text").await;
    let zip = export(&server, "dev").await;
    let mut archive = zip::ZipArchive::new(Cursor::new(zip)).unwrap();
    let mut names: Vec<String> = archive.file_names().map(|n| n.unwrap().into_owned()).collect();
    names.sort();
    assert_eq!(names, [".metadata.yml", "G1/a.yaml", "G2/b.json"]);
    let mut a = String::new();
    archive.by_name("G1/a.yaml").unwrap().read_to_string(&mut a).unwrap();
    assert_eq!(a, "a: 1\n");
    let mut meta = String::new();
    archive.by_name(".metadata.yml").unwrap().read_to_string(&mut meta).unwrap();
    assert!(
        meta.contains("dataId: 'b.json'") && meta.contains("type: 'json'") && meta.contains("appName: 'shop'"),
        "{meta}"
    );
}

#[tokio::test]
async fn import_publishes_the_archive_and_policies_decide_conflicts() {
    let server = Server::start();
    publish(&server, "dev", "G1", "a.yaml", "a: 1\n", "yaml").await;
    publish(&server, "dev", "G2", "b.json", "{}", "json").await;
    let zip = export(&server, "dev").await;

    let (status, r) = import(&server, "prod", "ABORT", zip.clone()).await;
    assert_eq!(status, 200, "{r}");
    assert_eq!(r["data"]["succCount"], 2);
    assert_eq!(content(&server, "prod", "G1", "a.yaml").await, (200, "a: 1\n".to_owned()));
    let (_, all) = call(client().get(server.url("/nacos/v1/cs/configs")).query(&[
        ("show", "all"),
        ("tenant", "prod"),
        ("group", "G2"),
        ("dataId", "b.json"),
    ]))
    .await;
    assert_eq!(json(&all)["type"], "json");

    // Existing configs: SKIP keeps them, ABORT stops, OVERWRITE replaces.
    publish(&server, "prod", "G1", "a.yaml", "changed", "yaml").await;
    let (_, r) = import(&server, "prod", "SKIP", zip.clone()).await;
    assert_eq!((r["data"]["succCount"].as_u64(), r["data"]["skipCount"].as_u64()), (Some(0), Some(2)));
    assert_eq!(content(&server, "prod", "G1", "a.yaml").await.1, "changed");
    let (_, r) = import(&server, "prod", "ABORT", zip.clone()).await;
    assert_eq!(r["data"]["failData"].as_array().map(Vec::len), Some(1));
    assert_eq!(content(&server, "prod", "G1", "a.yaml").await.1, "changed");
    let (_, r) = import(&server, "prod", "OVERWRITE", zip).await;
    assert_eq!(r["data"]["succCount"], 2);
    assert_eq!(content(&server, "prod", "G1", "a.yaml").await.1, "a: 1\n");
}

#[tokio::test]
async fn a_broken_upload_is_refused_and_nothing_is_stored() {
    let server = Server::start();
    let (status, body) = import(&server, "prod", "ABORT", b"this is not a zip".to_vec()).await;
    assert_eq!(status, 400, "{body}");
    let (status, _) = import(&server, "prod", "SOMETIMES", Vec::new()).await;
    assert_eq!(status, 400);
    let (_, page) = call(client().get(server.url("/nacos/v1/cs/configs")).query(&[
        ("search", "accurate"),
        ("tenant", "prod"),
        ("pageNo", "1"),
        ("pageSize", "10"),
    ]))
    .await;
    assert_eq!(json(&page)["totalCount"], 0);
}
