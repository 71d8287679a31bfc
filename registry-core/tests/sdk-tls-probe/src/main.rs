//! `sdk-tls-probe HTTP_PORT GRPC_PORT SERVICE IP`: registers `IP:8080` in `SERVICE` on the
//! registry at 127.0.0.1 through the crates.io nacos-sdk over TLS (CA from the SDK's own
//! `NACOS_CLIENT_TLS_CA_CERT`), lists the service, prints `listed <ip:port>...` and exits 0; any
//! failure exits non-zero.

use std::time::Duration;

use nacos_sdk::api::naming::{NamingService, NamingServiceBuilder, ServiceInstance};
use nacos_sdk::api::props::ClientProps;

const STEP: Duration = Duration::from_secs(20);

#[tokio::main]
async fn main() -> Result<(), String> {
    let args: Vec<String> = std::env::args().collect();
    let [_, http, grpc, service, ip] = args.as_slice() else { return Err("usage: HTTP GRPC SERVICE IP".into()) };
    let grpc: u16 = grpc.parse().map_err(|e| format!("grpc port: {e}"))?;
    let cache = std::env::temp_dir().join(format!("sdk-tls-probe-{}", std::process::id()));
    let props = ClientProps::new()
        .server_addr(format!("127.0.0.1:{http}"))
        .remote_grpc_port(grpc)
        .env_first(false)
        .app_name("sdk-tls-probe")
        .cache_dir(&cache);
    let built = tokio::time::timeout(STEP, NamingServiceBuilder::new(props).build()).await;
    let naming = built.map_err(|_| "connect timed out".to_owned())?.map_err(|e| e.to_string())?;
    let instance = ServiceInstance { ip: ip.clone(), port: 8080, ..Default::default() };
    let registered = tokio::time::timeout(STEP, naming.register_instance(service.clone(), None, instance)).await;
    registered.map_err(|_| "register timed out".to_owned())?.map_err(|e| e.to_string())?;
    let listed = tokio::time::timeout(STEP, naming.get_all_instances(service.clone(), None, Vec::new(), false)).await;
    let listed = listed.map_err(|_| "list timed out".to_owned())?.map_err(|e| e.to_string())?;
    let addrs: Vec<String> = listed.iter().map(ServiceInstance::ip_and_port).collect();
    println!("listed {}", addrs.join(" "));
    let _ = std::fs::remove_dir_all(&cache);
    Ok(())
}
