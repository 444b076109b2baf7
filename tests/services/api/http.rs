//! An HTTP client for the tests (one request per connection, as a
//! load balancer's health check would) and the API under test.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};

use crate::common::kafka::{Kafka, Running, PATIENCE};
use earlykill::api::{self, Api};
use earlykill::upstream::Publisher;
use earlykill_core::event::Millis;
use serde_json::Value;

/// The API served on an ephemeral port of 127.0.0.1.
pub(super) struct Http {
    address: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    runtime: tokio::runtime::Runtime,
}

impl Http {
    pub(super) fn serve(api: Api) -> Http {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .expect("bind");
        let address = listener.local_addr().expect("address");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        runtime.spawn(api::serve(listener, api, async {
            let _ = stopped.await;
        }));
        Http {
            address,
            stop: Some(stop),
            runtime,
        }
    }

    /// One HTTP/1.1 request; the status and the body.
    pub(super) fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[&str],
        body: &str,
    ) -> (u16, String) {
        let mut stream = TcpStream::connect(self.address).expect("connect");
        stream.set_read_timeout(Some(PATIENCE)).expect("timeout");
        let mut request = format!(
            "{method} {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\nContent-Length: {}\r\n",
            body.len()
        );
        for header in headers {
            request.push_str(header);
            request.push_str("\r\n");
        }
        request.push_str("\r\n");
        request.push_str(body);
        stream.write_all(request.as_bytes()).expect("write");
        let mut response = String::new();
        stream.read_to_string(&mut response).expect("read");
        let (head, body) = response.split_once("\r\n\r\n").expect("a full response");
        let status = head
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .expect("a status line");
        assert!(
            !head
                .to_ascii_lowercase()
                .contains("transfer-encoding: chunked"),
            "this client reads only sized bodies: {head}"
        );
        (status, body.to_owned())
    }

    pub(super) fn get(&self, path: &str) -> (u16, Value) {
        let (status, body) = self.request("GET", path, &[], "");
        (status, serde_json::from_str(&body).expect("a JSON body"))
    }

    /// A POST with `Content-Type: application/json` unless `headers` name
    /// another.
    pub(super) fn post(&self, path: &str, headers: &[&str], body: &str) -> (u16, Value) {
        let mut headers = headers.to_vec();
        if !headers
            .iter()
            .any(|h| h.to_ascii_lowercase().starts_with("content-type:"))
        {
            headers.push("Content-Type: application/json");
        }
        let (status, body) = self.request("POST", path, &headers, body);
        (status, serde_json::from_str(&body).expect("a JSON body"))
    }
}

impl Drop for Http {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = &self.runtime;
    }
}

pub(super) fn now() -> Millis {
    chrono::Utc::now().timestamp_millis()
}

pub(super) fn publisher(kafka: &Kafka) -> Publisher {
    Publisher::new(
        &kafka.cluster.bootstrap_servers(),
        &Default::default(),
        kafka.config.topics.clone(),
        PATIENCE,
    )
    .expect("publisher")
}

pub(super) fn with_processor(running: &Running) -> Api {
    Api {
        processor: Some((running.status.clone(), running.sessions.clone())),
        limits: Default::default(),
        ..Api::default()
    }
}
