//! Network boot over HTTP: per-MAC iPXE scripts by node state, the chain
//! script, and the kernel/initramfs with Range requests.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{Backend, start_with, test_config, test_db};
use serde_json::json;

const T: Duration = Duration::from_secs(20);

async fn text(
    url: &str,
    range: Option<&str>,
    head: bool,
) -> (u16, reqwest::header::HeaderMap, Vec<u8>) {
    let c = reqwest::Client::new();
    let mut req = if head { c.head(url) } else { c.get(url) };
    if let Some(r) = range {
        req = req.header("Range", r);
    }
    let resp = req.send().await.unwrap();
    let st = resp.status().as_u16();
    let h = resp.headers().clone();
    (st, h, resp.bytes().await.unwrap().to_vec())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipxe_scripts_and_ranged_files() {
    let db = test_db(Backend::Sqlite, "boot").await.unwrap();
    let files = tempfile::tempdir().unwrap();
    let kernel: Vec<u8> = (0..=255u8).cycle().take(10_000).collect();
    std::fs::write(files.path().join("vmlinuz"), &kernel).unwrap();
    std::fs::write(files.path().join("initramfs.img"), b"initramfs-bytes").unwrap();
    let mut cfg = test_config(&db.url);
    cfg.boot.kernel = Some(files.path().join("vmlinuz"));
    cfg.boot.initramfs = Some(files.path().join("initramfs.img"));
    cfg.boot.kernel_params = "console=ttyS0,115200n8".into();
    let (running, api) = start_with(cfg).await;

    let uuid = api
        .create_node(json!({"driver": "fake-hardware", "name": "pxe-1", "deploy_interface": "direct", "automated_clean": true}))
        .await;
    let (st, _) = api
        .post(
            "/v1/ports",
            json!({"address": "52:54:00:ab:cd:ef", "node_uuid": uuid}),
        )
        .await;
    assert_eq!(st, 201);
    let url = |mac: &str| format!("{}/boot/ipxe/{mac}", api.base);

    // enroll: local disk.
    let (st, h, body) = text(&url("52:54:00:ab:cd:ef"), None, false).await;
    assert_eq!(st, 200);
    assert!(
        h["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let s = String::from_utf8(body).unwrap();
    assert!(
        s.starts_with("#!ipxe\n")
            && s.contains("is enroll: booting from the local disk")
            && s.contains("\nexit\n"),
        "{s}"
    );

    // clean wait: the agent ramdisk, with the API URL and BOOTIF.
    api.provision("pxe-1", json!({"target": "manage"})).await;
    api.wait_state("pxe-1", "manageable", T).await;
    api.provision("pxe-1", json!({"target": "provide"})).await;
    api.wait_state("pxe-1", "clean wait", T).await;
    let (_, _, body) = text(&url("52-54-00-AB-CD-EF"), None, false).await;
    let s = String::from_utf8(body).unwrap();
    let kernel_line = format!(
        "kernel {b}/boot/vmlinuz initrd=initramfs.img ingot.api={b} BOOTIF=01-52-54-00-ab-cd-ef console=ttyS0,115200n8\n",
        b = api.base
    );
    assert!(s.contains(&kernel_line), "{s}");
    assert!(
        s.contains(&format!(
            "initrd --name initramfs.img {}/boot/initramfs.img\nboot\n",
            api.base
        )),
        "{s}"
    );

    // Unknown MAC: a script that says so.
    let (st, _, body) = text(&url("52:54:00:00:00:00"), None, false).await;
    assert_eq!(st, 200);
    assert!(
        String::from_utf8(body)
            .unwrap()
            .contains("no node has a port with MAC 52:54:00:00:00:00")
    );
    // The chain script.
    let (_, _, body) = text(&format!("{}/boot/boot.ipxe", api.base), None, false).await;
    assert!(
        String::from_utf8(body)
            .unwrap()
            .contains("/boot/ipxe/${net0/mac}")
    );

    // Files, whole and in ranges.
    let k = format!("{}/boot/vmlinuz", api.base);
    let (st, h, body) = text(&k, None, false).await;
    assert_eq!(st, 200);
    assert_eq!(h["accept-ranges"], "bytes");
    assert_eq!(body, kernel);
    let (st, h, body) = text(&k, Some("bytes=100-199"), false).await;
    assert_eq!(st, 206);
    assert_eq!(h["content-range"], "bytes 100-199/10000");
    assert_eq!(body, &kernel[100..200]);
    let (st, _, body) = text(&k, Some("bytes=-16"), false).await;
    assert_eq!(st, 206);
    assert_eq!(body, &kernel[9984..]);
    let (st, h, _) = text(&k, Some("bytes=20000-"), false).await;
    assert_eq!(st, 416);
    assert_eq!(h["content-range"], "bytes */10000");
    let (st, h, body) = text(&k, None, true).await;
    assert_eq!(st, 200);
    assert_eq!(h["content-length"], "10000");
    assert!(body.is_empty());
    let (st, _, body) = text(&format!("{}/boot/initramfs.img", api.base), None, false).await;
    assert_eq!(st, 200);
    assert_eq!(body, b"initramfs-bytes");
    running.shutdown().await;
}
