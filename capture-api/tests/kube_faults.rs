//! Fault paths of Kubernetes mode against kube's mock client (tower-test), for what a real
//! API server will not do on demand: a 500 on create must reach the user as a 503
//! problem+json saying the Kubernetes API server failed (with its message), and a conflict
//! when a schedule is replaced must be a 409 saying to read it again. The mock answers the
//! TokenReview and SubjectAccessReview as allowed, so the request gets to the store.

use std::sync::Arc;
use std::time::Duration;

use capture_api::kube::agents::{Agents, Credentials};
use capture_api::kube::{Cluster, ClusterSettings};
use capture_api::state::{AppState, Settings};
use capture_api::store::Store;
use http::{Request, Response};
use kube::client::Body;
use serde_json::{json, Value};

/// The mock API server: reviews allowed, creating a capture fails with 500, replacing a
/// schedule conflicts.
fn answer(method: &str, path: &str) -> (u16, Value) {
    match (method, path) {
        ("POST", "/apis/authentication.k8s.io/v1/tokenreviews") => (
            201,
            json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": {"token": "x"},
                   "status": {"authenticated": true, "user": {"username": "alice"}}}),
        ),
        ("POST", "/apis/authorization.k8s.io/v1/subjectaccessreviews") => (
            201,
            json!({"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview", "spec": {},
                   "status": {"allowed": true}}),
        ),
        ("POST", "/apis/podcap.io/v1alpha1/namespaces/shop/packetcaptures") => (
            500,
            json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                   "message": "etcdserver: request timed out", "reason": "InternalError", "code": 500}),
        ),
        ("GET", "/apis/podcap.io/v1alpha1/namespaces/shop/packetcaptureschedules/nightly") => (
            200,
            json!({"apiVersion": "podcap.io/v1alpha1", "kind": "PacketCaptureSchedule",
                   "metadata": {"name": "nightly", "namespace": "shop", "uid": "u1", "resourceVersion": "5",
                                "creationTimestamp": "2025-01-01T00:00:00Z"},
                   "spec": {"schedule": "0 2 * * *", "template": {"duration": "10m"}}, "status": {}}),
        ),
        ("PUT", "/apis/podcap.io/v1alpha1/namespaces/shop/packetcaptureschedules/nightly") => (
            409,
            json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                   "message": "the object has been modified; please apply your changes to the latest version and try again",
                   "reason": "Conflict", "code": 409}),
        ),
        _ => (
            404,
            json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": "not found",
                   "reason": "NotFound", "code": 404}),
        ),
    }
}

#[test]
fn apiserver_errors_and_conflicts_become_problems() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let base = runtime.block_on(async {
        tokio::spawn(async move {
            while let Some((request, send)) = handle.next_request().await {
                let (status, body) = answer(request.method().as_str(), request.uri().path());
                send.send_response(
                    Response::builder()
                        .status(status)
                        .header("content-type", "application/json")
                        .body(Body::from(body.to_string().into_bytes()))
                        .unwrap(),
                );
            }
        });
        let client = kube::Client::new(service, "default");
        let ca = capture_agent::cluster::tls::AgentCa::generate().unwrap();
        let agents = Agents::new(
            client.clone(),
            Default::default(),
            9090,
            Credentials::None,
            ca.cert_pem(),
        )
        .unwrap();
        let cluster = Cluster::new(
            client,
            agents,
            ClusterSettings {
                shares_namespace: "podcap-system".into(),
                max_window: Duration::from_secs(3600),
                report_timeout: Duration::from_secs(120),
                finish_grace: Duration::from_secs(30),
            },
        );
        let store: Arc<dyn Store> = cluster.store.clone();
        let state = AppState {
            store,
            backend: cluster,
            settings: Arc::new(Settings {
                max_window: Duration::from_secs(3600),
                tls: false,
            }),
            tickets: Arc::default(),
            audit: Arc::new(capture_api::audit::AuditTrail::in_memory()),
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move {
            axum::serve(listener, capture_api::server::router(state))
                .await
                .unwrap()
        });
        base
    });
    let http: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(20)))
        .build()
        .into();
    let send = |method: &str, path: &str, body: Value| {
        let url = format!("{base}{path}");
        let request = match method {
            "PUT" => http.put(&url),
            _ => http.post(&url),
        };
        let mut response = request
            .header("Authorization", "Bearer alice-token")
            .header("Content-Type", "application/json")
            .send(body.to_string())
            .unwrap();
        let status = response.status().as_u16();
        let kind = response
            .headers()
            .get("content-type")
            .unwrap()
            .to_str()
            .unwrap()
            .to_string();
        let body: Value =
            serde_json::from_slice(&response.body_mut().read_to_vec().unwrap()).unwrap();
        (status, kind, body)
    };

    let (status, kind, problem) = send(
        "POST",
        "/api/v1/namespaces/shop/captures",
        json!({"metadata": {"name": "web"}, "spec": {"duration": "1m"}}),
    );
    assert_eq!(
        (status, kind.as_str()),
        (503, "application/problem+json"),
        "{problem}"
    );
    let detail = problem["detail"].as_str().unwrap();
    assert!(
        detail.contains("Kubernetes API server failed")
            && detail.contains("etcdserver: request timed out")
            && detail.contains("try again"),
        "{detail}"
    );

    let (status, kind, problem) = send(
        "PUT",
        "/api/v1/namespaces/shop/schedules/nightly",
        json!({"spec": {"schedule": "0 3 * * *", "template": {"duration": "10m"}}}),
    );
    assert_eq!(
        (status, kind.as_str()),
        (409, "application/problem+json"),
        "{problem}"
    );
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("read it again"),
        "{problem}"
    );
}
