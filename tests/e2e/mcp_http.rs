//! The server over streamable HTTP: an rmcp client, Host/Origin checks, and the bind guard.
// Tests drive the binary under test directly; the product itself starts programs only through
// deploy_core::process (clippy.toml).
#![allow(clippy::disallowed_methods)]

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use oc_deploy_e2e::{Project, bin, free_port};
use rmcp::ServiceExt;
use rmcp::model::CallToolRequestParams;
use rmcp::transport::StreamableHttpClientTransport;

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn start(p: &Project, extra: &[&str]) -> (Server, u16) {
    let port = free_port();
    let child = Command::new(bin())
        .args(["serve", "--http", &format!("127.0.0.1:{port}"), "--project-dir"])
        .arg(&p.root)
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let server = Server(child);
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
            return (server, port);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("oc-deploy serve --http did not listen on {port}");
}

#[tokio::test(flavor = "multi_thread")]
async fn rmcp_client_over_http_lists_tools_and_calls_status() {
    let p = Project::sample();
    let (_server, port) = start(&p, &[]).await;
    let transport = StreamableHttpClientTransport::from_uri(format!("http://127.0.0.1:{port}/mcp"));
    let client = ().serve(transport).await.unwrap();
    assert_eq!(client.peer_info().unwrap().server_info.as_ref().unwrap().name, "oc-deploy");
    let tools = client.list_all_tools().await.unwrap();
    assert!(tools.iter().any(|t| t.name == "deploy_prod"));
    let r = client.call_tool(CallToolRequestParams::new("deploy_status")).await.unwrap();
    assert_eq!(r.is_error, Some(false));
    assert_eq!(r.structured_content.unwrap()["project"], "e2e-shop");
    let _ = client.cancel().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn dns_rebinding_and_foreign_origins_are_refused() {
    let p = Project::sample();
    let (_server, port) = start(&p, &[]).await;
    let url = format!("http://127.0.0.1:{port}/mcp");
    let body = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"0"}}}"#;
    let client = reqwest::Client::new();
    let send = |host: Option<&str>, origin: Option<&str>| {
        let mut r =
            client.post(&url).header("content-type", "application/json").header("accept", "application/json, text/event-stream").body(body);
        if let Some(h) = host {
            r = r.header("host", h);
        }
        if let Some(o) = origin {
            r = r.header("origin", o);
        }
        r.send()
    };
    assert_eq!(send(None, None).await.unwrap().status().as_u16(), 200);
    let evil_host = send(Some("evil.example.com"), None).await.unwrap().status().as_u16();
    assert!((400..500).contains(&evil_host), "Host: evil.example.com got {evil_host}");
    let evil_origin = send(None, Some("https://evil.example.com")).await.unwrap().status().as_u16();
    assert_eq!(evil_origin, 403);
    assert_eq!(send(None, Some(&format!("http://localhost:{port}"))).await.unwrap().status().as_u16(), 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_token_protects_the_endpoint() {
    let p = Project::sample();
    let (_server, port) = start(&p, &["--token", "e2e-secret-token-123"]).await;
    let url = format!("http://127.0.0.1:{port}/mcp");
    let r = reqwest::Client::new().post(&url).header("accept", "application/json, text/event-stream").body("{}").send().await.unwrap();
    assert_eq!(r.status().as_u16(), 401);
}

#[test]
fn a_non_loopback_bind_without_a_token_is_refused() {
    let out = Command::new(bin())
        .args(["serve", "--http", "0.0.0.0:0"])
        .env_remove("OC_DEPLOY_HTTP_TOKEN")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("token"), "{}", String::from_utf8_lossy(&out.stderr));
}
