//! The lab on this machine: nodes reach each other over the bridge, partitions drop traffic one
//! way or both, heal restores it, a moved node is reachable at its new address, a node's
//! resolv.conf is its own, a removed node frees its address, and dropping the lab removes its namespaces and kills what ran there.
//! Skips (prints `SKIP netlab: ...`) without root, `ip` or `nft`; `CHAOS_REQUIRED=1` fails instead.

#![allow(clippy::unwrap_used)]

use std::net::{Ipv4Addr, TcpListener};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use netlab::{Lab, Node, NodeOptions};

const PORT: u16 = 7070;

/// Not a test of its own: the listener the lab test starts inside a namespace by running this
/// binary there with `NETLAB_LISTEN=addr:port`.
#[test]
#[ignore = "helper process of lab_partitions_heals_moves_and_cleans_up"]
fn listen_helper() {
    let Ok(addr) = std::env::var("NETLAB_LISTEN") else { return };
    let listener = TcpListener::bind(addr.as_str()).unwrap();
    for conn in listener.incoming() {
        drop(conn);
    }
}

fn listen(lab: &Lab, node: Node) -> Child {
    let exe = std::env::current_exe().unwrap();
    lab.command(node, exe)
        .args(["--ignored", "--exact", "listen_helper"])
        .env("NETLAB_LISTEN", format!("{}:{PORT}", lab.addr(node)))
        .stdout(Stdio::null())
        .spawn()
        .unwrap()
}

/// Whether a TCP connect from `from` to `to:PORT` succeeds within a second.
fn connects(lab: &Lab, from: Node, to: Ipv4Addr) -> bool {
    let script = format!("exec 3<>/dev/tcp/{to}/{PORT}");
    lab.command(from, "timeout").args(["1", "bash", "-c", &script]).stderr(Stdio::null()).status().unwrap().success()
}

/// Polls `ok` for up to ten seconds × `IT_PATIENCE` (the suite's one patience factor).
fn eventually(mut ok: impl FnMut() -> bool) -> bool {
    let patience = std::env::var("IT_PATIENCE").ok().and_then(|v| v.parse::<u32>().ok()).unwrap_or(1).max(1);
    let deadline = Instant::now() + Duration::from_secs(10) * patience;
    while Instant::now() < deadline {
        if ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

#[test]
fn lab_partitions_heals_moves_and_cleans_up() {
    let Some(mut lab) = netlab::start_or_skip("netlab", "CHAOS_REQUIRED") else { return };
    let a = lab.add_node("a").unwrap();
    let b = lab.add_node("b").unwrap();
    let resolv = "nameserver 198.18.0.53\n";
    let c = lab.add_node_with("c", NodeOptions { resolv_conf: Some(resolv.into()), addr: None }).unwrap();
    let mut listener = listen(&lab, a);
    assert!(eventually(|| connects(&lab, b, lab.addr(a))), "b reaches a over the bridge");

    lab.block(b, a).unwrap();
    assert!(!connects(&lab, b, lab.addr(a)), "b's packets to a are dropped");
    assert!(connects(&lab, c, lab.addr(a)), "c is not partitioned");
    lab.heal().unwrap();
    assert!(connects(&lab, b, lab.addr(a)), "healed");

    lab.partition(&[vec![a], vec![b, c]]).unwrap();
    assert!(!connects(&lab, c, lab.addr(a)) && !connects(&lab, b, lab.addr(a)));
    assert_eq!(lab.blocked().len(), 4, "a⇄b and a⇄c");
    lab.heal().unwrap();

    listener.kill().unwrap();
    listener.wait().unwrap();
    let moved = lab.host(200);
    lab.readdress(a, moved).unwrap();
    let mut listener = listen(&lab, a);
    assert!(eventually(|| connects(&lab, b, moved)), "a answers at its new address");

    let out = lab.command(c, "cat").arg("/etc/resolv.conf").output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), resolv, "c's own resolv.conf");

    // A removed node (a deleted pod) frees its address for a new one.
    lab.cut(b, c).unwrap();
    let c_addr = lab.addr(c);
    let c_netns = lab.netns(c).to_owned();
    lab.remove_node(c).unwrap();
    assert!(lab.blocked().is_empty(), "its partitions went with it");
    assert!(!std::path::Path::new("/etc/netns").join(&c_netns).exists());
    let d = lab.add_node_with("d", NodeOptions { addr: Some(c_addr), ..Default::default() }).unwrap();
    assert!(connects(&lab, d, moved), "the new node at the old address reaches a");

    let names: Vec<String> = lab.nodes().into_iter().map(|n| lab.netns(n).to_owned()).collect();
    drop(lab);
    let list = String::from_utf8(Command::new("ip").args(["netns", "list"]).output().unwrap().stdout).unwrap();
    assert!(names.iter().all(|n| !list.contains(n.as_str())), "namespaces removed: {list}");
    assert!(eventually(|| listener.try_wait().unwrap().is_some()), "the listener left in the namespace was killed");
}
