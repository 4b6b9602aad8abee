//! The routes in milliseconds, without root, a kernel capture or a cluster: the real router,
//! access guard, token auth and SQLite store, with a fixture [`Backend`] in place of the mode
//! (pods from a list, merge inputs from memory, and the capture life cycle recorded instead of
//! run). It checks what the routes decide: who gets in, what reaches the backend, and the
//! answers' shapes. The end-to-end suites in `tests/` run the same routes against the real
//! kernel and a real kube-apiserver.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use axum::response::Response;
use axum::Router;
use capture_agent::merge::MergeInput;
use capture_api::access::{Access, Caller};
use capture_api::auth::{self, Action, Role};
use capture_api::backend::Backend;
use capture_api::pods::Pod;
use capture_api::problem::Problem;
use capture_api::runs::{Runs, RunsError};
use capture_api::state::{AppState, Settings};
use capture_api::store::{CaptureRecord, SqliteStore, Store};
use capture_spec::LabelSelector;
use serde_json::{json, Value};
use tower::ServiceExt;

/// The fixture mode: pods from a list, token rules as in standalone mode, and every life-cycle
/// call written down.
struct Fixture {
    store: Arc<dyn Store>,
    pods: Vec<Pod>,
    calls: Mutex<Vec<String>>,
    full: Option<String>,
}

impl Fixture {
    fn called(&self, what: String) {
        self.calls.lock().unwrap().push(what);
    }

    fn token(caller: &Caller) -> &auth::TokenCaller {
        match caller {
            Caller::Token(token) => token,
            Caller::Kubernetes(_) => panic!("the fixture only issues tokens"),
        }
    }
}

impl Runs for Fixture {
    fn refuses_new(&self) -> Option<String> {
        self.full.clone()
    }

    fn start_now(&self) -> Result<(), RunsError> {
        self.called("start".into());
        Ok(())
    }

    fn stop(&self, _store: &dyn Store, capture: &CaptureRecord) -> Result<(), RunsError> {
        self.called(format!("stop {}", capture.name));
        Ok(())
    }

    fn delete(&self, store: &dyn Store, capture: &CaptureRecord) -> Result<(), RunsError> {
        self.called(format!("delete {}", capture.name));
        store.delete_capture(&capture.namespace, &capture.name)?;
        Ok(())
    }

    fn delete_schedule(
        &self,
        store: &dyn Store,
        namespace: &str,
        name: &str,
    ) -> Result<bool, RunsError> {
        self.called(format!("delete schedule {name}"));
        Ok(store.delete_schedule(namespace, name)?)
    }
}

#[async_trait]
impl Backend for Fixture {
    async fn authenticate(&self, header: Option<&str>) -> Result<Caller, Problem> {
        auth::authenticate(self.store.as_ref(), header).map(Caller::Token)
    }

    async fn allowed(
        &self,
        caller: &Caller,
        access: Access,
        namespace: &str,
    ) -> Result<bool, Problem> {
        Ok(self.authorize(caller, access, namespace).await.is_ok())
    }

    async fn authorize(
        &self,
        caller: &Caller,
        access: Access,
        namespace: &str,
    ) -> Result<(), Problem> {
        Self::token(caller).authorize(access.token_action(), namespace)
    }

    async fn namespaces(&self, caller: &Caller) -> Result<Vec<String>, Problem> {
        let token = Self::token(caller);
        let mut names: Vec<String> = self.pods.iter().map(|p| p.namespace.clone()).collect();
        names.sort();
        names.dedup();
        names.retain(|n| token.authorize(Action::Read, n).is_ok());
        Ok(names)
    }

    async fn pods(&self, namespace: &str, selector: &LabelSelector) -> Result<Vec<Pod>, Problem> {
        self.called(format!("pods {namespace} {selector}"));
        Ok(self
            .pods
            .iter()
            .filter(|p| p.namespace == namespace && selector.matches(&p.labels))
            .cloned()
            .collect())
    }

    async fn inputs(&self, record: &CaptureRecord) -> Result<Vec<MergeInput>, Problem> {
        self.called(format!("inputs {}", record.name));
        // A capture that lists files merges one in-memory pcap per target.
        Ok(record
            .status
            .targets
            .iter()
            .filter(|t| !t.files.is_empty())
            .map(|t| {
                MergeInput::new(
                    format!("{}/{} on {}", t.namespace, t.pod, t.node),
                    std::io::Cursor::new(pcap_of(40)),
                )
            })
            .collect())
    }

    async fn file(
        &self,
        record: &CaptureRecord,
        id: &str,
        _headers: &HeaderMap,
    ) -> Result<Response, Problem> {
        capture_api::files::find_file(record, id)?;
        self.called(format!("file {} {id}", record.name));
        Ok(Response::new(Body::from("bytes")))
    }

    async fn live(&self, record: &CaptureRecord) -> Result<Response, Problem> {
        self.called(format!("live {}", record.name));
        Ok(Response::new(Body::empty()))
    }

    fn live_chunks_skipped(&self) -> u64 {
        0
    }
}

/// A classic pcap (microseconds, Ethernet) of `packets` 60-byte frames, a millisecond apart.
fn pcap_of(packets: u32) -> Vec<u8> {
    let mut bytes = Vec::new();
    bytes.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
    bytes.extend_from_slice(&2u16.to_le_bytes());
    bytes.extend_from_slice(&4u16.to_le_bytes());
    for word in [0u32, 0, 65535, 1] {
        bytes.extend_from_slice(&word.to_le_bytes());
    }
    for n in 0..packets {
        for word in [1_700_000_000u32, n * 1000, 60, 60] {
            bytes.extend_from_slice(&word.to_le_bytes());
        }
        bytes.extend((0..60u8).map(|b| b.wrapping_add(n as u8)));
    }
    bytes
}

struct Api {
    router: Router,
    fixture: Arc<Fixture>,
    store: Arc<dyn Store>,
    admin: String,
    _data: tempfile::TempDir,
}

fn pod(namespace: &str, name: &str, app: &str) -> Pod {
    Pod {
        namespace: namespace.into(),
        name: name.into(),
        labels: BTreeMap::from([("app".to_string(), app.to_string())]),
        node: "node-1".into(),
        interface: format!("veth-{name}"),
    }
}

fn api_with(full: Option<&str>) -> Api {
    let data = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> =
        Arc::new(SqliteStore::open(&data.path().join("podcap.db")).unwrap());
    let admin = auth::create_token(store.as_ref(), Role::Admin, None, "test admin").unwrap();
    let fixture = Arc::new(Fixture {
        store: store.clone(),
        pods: vec![
            pod("shop", "web-1", "web"),
            pod("shop", "db-1", "db"),
            pod("bank", "web-9", "web"),
        ],
        calls: Mutex::new(Vec::new()),
        full: full.map(str::to_string),
    });
    let state = AppState {
        store: store.clone(),
        backend: fixture.clone(),
        settings: Arc::new(Settings {
            max_window: Duration::from_secs(3600),
            tls: false,
        }),
        tickets: Arc::default(),
        audit: Arc::new(capture_api::audit::AuditTrail::in_memory()),
    };
    Api {
        router: capture_api::server::router(state),
        fixture,
        store,
        admin,
        _data: data,
    }
}

impl Api {
    fn token(&self, role: Role, namespaces: &[&str]) -> String {
        let scope =
            (!namespaces.is_empty()).then(|| namespaces.iter().map(|n| n.to_string()).collect());
        auth::create_token(self.store.as_ref(), role, scope, "test").unwrap()
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, String, Value) {
        let mut request = Request::builder().method(method).uri(path);
        if let Some(token) = token {
            request = request.header("Authorization", format!("Bearer {token}"));
        }
        let body = match body {
            Some(value) => {
                request = request.header("Content-Type", "application/json");
                Body::from(value.to_string())
            }
            None => Body::empty(),
        };
        let response = self
            .router
            .clone()
            .oneshot(request.body(body).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let kind = response
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        let value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        (status, kind, value)
    }

    /// `method path` as the admin, without a body.
    async fn as_admin(&self, method: Method, path: &str) -> (StatusCode, String, Value) {
        self.send(method, path, Some(&self.admin), None).await
    }

    fn calls(&self) -> Vec<String> {
        std::mem::take(&mut *self.fixture.calls.lock().unwrap())
    }
}

/// Every operation of the OpenAPI document with its path parameters filled in.
fn operations() -> Vec<(Method, String, String)> {
    capture_api::server::operations()
        .iter()
        .map(|(method, path)| {
            let concrete = path
                .replace("{namespace}", "shop")
                .replace("{name}", "web")
                .replace("{id}", "f1")
                .replace("{token}", "x");
            (method.clone(), path.clone(), concrete)
        })
        .collect()
}

#[tokio::test]
async fn every_route_that_needs_a_token_refuses_none_before_its_handler() {
    let api = api_with(None);
    let mut checked = 0;
    for (method, template, path) in operations() {
        let access = capture_api::access::access_of(&method, &template).unwrap();
        if access == Access::Public {
            continue;
        }
        let (status, kind, problem) = api.send(method.clone(), &path, None, Some(json!({}))).await;
        assert_eq!(
            status,
            StatusCode::UNAUTHORIZED,
            "{method} {path}: {problem}"
        );
        assert_eq!(kind, "application/problem+json", "{method} {path}");
        let (status, _, _) = api
            .send(method.clone(), &path, Some("pcp_wrong"), None)
            .await;
        assert_eq!(
            status,
            StatusCode::UNAUTHORIZED,
            "{method} {path} with a bad token"
        );
        checked += 1;
    }
    assert!(checked >= 20, "only {checked} routes need a token?");
    // A method no handler serves is the router's 405, token or not, never a 401 or 403.
    for path in ["/api/v1/captures", "/api/v1/namespaces/shop/captures/web"] {
        let (status, _, _) = api.send(Method::PATCH, path, None, None).await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "PATCH {path}");
    }
    assert!(api.calls().is_empty(), "no handler reached the backend");
}

#[tokio::test]
async fn the_access_table_decides_before_the_handler_runs() {
    let api = api_with(None);
    let viewer = api.token(Role::Viewer, &[]);
    let bank_operator = api.token(Role::Operator, &["bank"]);
    for (method, template, path) in operations() {
        let access = capture_api::access::access_of(&method, &template).unwrap();
        let needs_more_than_read = matches!(access.token_action(), Action::Write | Action::Share);
        if matches!(access, Access::Public | Access::Authenticated) {
            continue;
        }
        // An operator of another namespace is refused everything in `shop`.
        let (status, kind, problem) = api
            .send(method.clone(), &path, Some(&bank_operator), Some(json!({})))
            .await;
        assert_eq!(
            (status, kind.as_str()),
            (StatusCode::FORBIDDEN, "application/problem+json"),
            "{method} {path}: {problem}"
        );
        assert!(
            problem["detail"].as_str().unwrap().contains("bank"),
            "{problem}"
        );
        if needs_more_than_read {
            let (status, _, problem) = api
                .send(method.clone(), &path, Some(&viewer), Some(json!({})))
                .await;
            assert_eq!(
                status,
                StatusCode::FORBIDDEN,
                "viewer {method} {path}: {problem}"
            );
        }
    }
    assert!(
        api.calls().is_empty(),
        "refused requests never reach the backend: {:?}",
        api.calls()
    );
}

#[tokio::test]
async fn a_capture_goes_through_the_backend_from_create_to_delete() {
    let api = api_with(None);
    let admin = api.admin.clone();
    let (status, _, created) = api
        .send(
            Method::POST,
            "/api/v1/namespaces/shop/captures",
            Some(&admin),
            Some(json!({"metadata": {"name": "web"}, "spec": {"podSelector": "app=web", "duration": "1m"}})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["status"]["phase"], "Scheduled");
    assert_eq!(api.calls(), ["start"]);

    let (status, _, stopped) = api
        .as_admin(Method::POST, "/api/v1/namespaces/shop/captures/web/stop")
        .await;
    assert_eq!(status, StatusCode::OK, "{stopped}");
    assert_eq!(api.calls(), ["stop web"]);

    let (status, _, _) = api
        .as_admin(Method::GET, "/api/v1/namespaces/shop/captures/web/pcap")
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(api.calls(), ["inputs web"]);

    let (status, _, problem) = api
        .as_admin(
            Method::GET,
            "/api/v1/namespaces/shop/captures/web/files/../../etc/passwd",
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{problem}");
    let (status, _, problem) = api
        .as_admin(Method::GET, "/api/v1/namespaces/shop/captures/web/files/f1")
        .await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "no file f1 is listed: {problem}"
    );
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("list its files"),
        "{problem}"
    );
    assert!(
        api.calls().is_empty(),
        "an unlisted file never reaches the backend"
    );

    let (status, _, _) = api
        .as_admin(Method::DELETE, "/api/v1/namespaces/shop/captures/web")
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(api.calls(), ["delete web"]);
    let (status, _, _) = api
        .as_admin(Method::GET, "/api/v1/namespaces/shop/captures/web")
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_full_backend_refuses_new_captures_with_507() {
    let api = api_with(Some(
        "the data directory's disk has 10 MiB free, less than --min-free 512MiB",
    ));
    let (status, kind, problem) = api
        .send(
            Method::POST,
            "/api/v1/namespaces/shop/captures",
            Some(&api.admin.clone()),
            Some(json!({"spec": {"duration": "1m"}})),
        )
        .await;
    assert_eq!(
        (status.as_u16(), kind.as_str()),
        (507, "application/problem+json"),
        "{problem}"
    );
    assert!(
        problem["detail"].as_str().unwrap().contains("--min-free"),
        "{problem}"
    );
    assert!(api.calls().is_empty());
    let (_, _, list) = api
        .as_admin(Method::GET, "/api/v1/namespaces/shop/captures")
        .await;
    assert_eq!(list["items"], json!([]), "nothing was stored");
}

#[tokio::test]
async fn pods_and_namespaces_come_from_the_backend_filtered_by_the_caller() {
    let api = api_with(None);
    let (status, _, pods) = api
        .as_admin(
            Method::GET,
            "/api/v1/namespaces/shop/pods?selector=app%3Dweb",
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let names: Vec<&str> = pods
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["web-1"]);
    assert_eq!(api.calls(), ["pods shop app=web"]);

    let (status, kind, problem) = api
        .as_admin(
            Method::GET,
            "/api/v1/namespaces/shop/pods?selector=app%3D%3D%3D",
        )
        .await;
    assert_eq!(
        (status, kind.as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, "application/problem+json")
    );
    assert_eq!(problem["invalidParams"][0]["name"], "selector", "{problem}");
    assert!(
        api.calls().is_empty(),
        "a bad selector never reaches the backend"
    );

    let bank = api.token(Role::Viewer, &["bank"]);
    let (_, _, namespaces) = api
        .send(Method::GET, "/api/v1/namespaces", Some(&bank), None)
        .await;
    assert_eq!(namespaces["items"], json!([{"name": "bank"}]));
    let (_, _, namespaces) = api.as_admin(Method::GET, "/api/v1/namespaces").await;
    assert_eq!(
        namespaces["items"],
        json!([{"name": "bank"}, {"name": "shop"}])
    );

    for namespace in ["shop", "bank"] {
        let (status, _, created) = api
            .send(
                Method::POST,
                &format!("/api/v1/namespaces/{namespace}/captures"),
                Some(&api.admin.clone()),
                Some(json!({"metadata": {"name": "web"}, "spec": {"duration": "1m"}})),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{created}");
    }
    let (_, _, all) = api
        .send(Method::GET, "/api/v1/captures", Some(&bank), None)
        .await;
    let seen: Vec<&str> = all["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["metadata"]["namespace"].as_str().unwrap())
        .collect();
    assert_eq!(seen, ["bank"], "a bank token sees only bank's captures");
    let (_, _, all) = api.as_admin(Method::GET, "/api/v1/captures").await;
    assert_eq!(all["items"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn deleting_a_schedule_is_the_backends_business() {
    let api = api_with(None);
    let admin = api.admin.clone();
    let (status, _, created) = api
        .send(
            Method::POST,
            "/api/v1/namespaces/shop/schedules",
            Some(&admin),
            Some(json!({"metadata": {"name": "nightly"}, "spec": {"schedule": "0 2 * * *", "template": {"duration": "10m"}}})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let (status, _, _) = api
        .as_admin(Method::DELETE, "/api/v1/namespaces/shop/schedules/nightly")
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(api.calls(), ["delete schedule nightly"]);
    let (status, kind, _) = api
        .as_admin(Method::DELETE, "/api/v1/namespaces/shop/schedules/nightly")
        .await;
    assert_eq!(
        (status, kind.as_str()),
        (StatusCode::NOT_FOUND, "application/problem+json")
    );
}

/// Behind the Kubernetes API server's service proxy `Authorization` is stripped: the token may
/// come in `X-Podcap-Authorization` instead, through the same checks; two different tokens are
/// refused.
#[tokio::test]
async fn the_token_may_come_in_x_podcap_authorization() {
    let api = api_with(None);
    let viewer = api.token(Role::Viewer, &["shop"]);
    let send = |headers: Vec<(&'static str, String)>| {
        let router = api.router.clone();
        async move {
            let mut request = Request::builder()
                .method(Method::GET)
                .uri("/api/v1/namespaces/shop/captures");
            for (name, value) in headers {
                request = request.header(name, value);
            }
            let response = router
                .oneshot(request.body(Body::empty()).unwrap())
                .await
                .unwrap();
            let status = response.status();
            let kind = response
                .headers()
                .get("content-type")
                .map(|v| v.to_str().unwrap().to_string())
                .unwrap_or_default();
            (status, kind)
        }
    };
    let bearer = |token: &str| format!("Bearer {token}");
    let (status, _) = send(vec![("X-Podcap-Authorization", bearer(&viewer))]).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = send(vec![
        ("Authorization", bearer(&viewer)),
        ("X-Podcap-Authorization", bearer(&viewer)),
    ])
    .await;
    assert_eq!(status, StatusCode::OK, "the same token in both");
    let (status, kind) = send(vec![
        ("Authorization", bearer(&viewer)),
        ("X-Podcap-Authorization", bearer(&api.admin)),
    ])
    .await;
    assert_eq!(
        (status, kind.as_str()),
        (StatusCode::BAD_REQUEST, "application/problem+json"),
        "two different tokens"
    );
    let (status, kind) = send(vec![]).await;
    assert_eq!(
        (status, kind.as_str()),
        (StatusCode::UNAUTHORIZED, "application/problem+json")
    );
    let (status, _) = send(vec![("X-Podcap-Authorization", bearer("pcp_wrong"))]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // The same role checks: a viewer of `shop` may not create there.
    let response = api
        .router
        .clone()
        .oneshot(
            Request::builder()
                .method(Method::POST)
                .uri("/api/v1/namespaces/shop/captures")
                .header("X-Podcap-Authorization", bearer(&viewer))
                .header("Content-Type", "application/json")
                .body(Body::from("{}"))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
}

/// The merged download resumes only a finished capture: a strong ETag over uid, format and
/// files, one range answered 206 (suffix, slice), If-Range honoured, several ranges or a stale
/// If-Range answered 200 in full, a range past the end 416 with `bytes */LEN`; a running
/// capture is 200 in full without ETag or Accept-Ranges.
#[tokio::test]
async fn the_merged_download_of_a_finished_capture_resumes_with_range() {
    let api = api_with(None);
    let admin = api.admin.clone();
    let with_files = |name: &str, phase: &str, size: u64| {
        let spec = json!({"metadata": {"name": name}, "spec": {"podSelector": "app=web", "duration": "1m"}});
        let status = json!({"phase": phase, "targets": [{"node": "node-1", "namespace": "shop", "pod": "web-1",
            "interface": "eth0", "state": "Completed", "files": [{"id": "f1", "name": "web-1.pcap", "size": size, "packets": 40}]}]});
        (
            spec,
            serde_json::from_value::<capture_spec::CaptureStatus>(status).unwrap(),
        )
    };
    let get = |path: &'static str, headers: Vec<(&'static str, String)>| {
        let router = api.router.clone();
        let admin = admin.clone();
        async move {
            let mut request = Request::builder()
                .uri(path)
                .header("Authorization", format!("Bearer {admin}"));
            for (name, value) in headers {
                request = request.header(name, value);
            }
            let response = router
                .oneshot(request.body(Body::empty()).unwrap())
                .await
                .unwrap();
            let (parts, body) = response.into_parts();
            let bytes = axum::body::to_bytes(body, usize::MAX).await.unwrap();
            (parts.status, parts.headers, bytes.to_vec())
        }
    };
    for (name, phase) in [("done", "Completed"), ("busy", "Capturing")] {
        let (spec, status) = with_files(name, phase, 2000);
        let (code, _, body) = api
            .send(
                Method::POST,
                "/api/v1/namespaces/shop/captures",
                Some(&admin),
                Some(spec),
            )
            .await;
        assert_eq!(code, StatusCode::CREATED, "{body}");
        let record = api.store.capture("shop", name).unwrap().unwrap();
        assert!(api
            .store
            .update_capture_status(&record.uid, &status)
            .unwrap());
    }
    const DONE: &str = "/api/v1/namespaces/shop/captures/done/pcap";

    let (code, headers, full) = get(DONE, vec![]).await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(headers["accept-ranges"], "bytes");
    let etag = headers["etag"].to_str().unwrap().to_string();
    assert!(etag.starts_with('"') && etag.len() > 10, "{etag}");
    let length = full.len();
    assert!(length > 1000, "a merged capture: {length} bytes");
    let (_, headers, _) = get(
        "/api/v1/namespaces/shop/captures/done/pcap?format=pcap",
        vec![],
    )
    .await;
    assert_ne!(
        headers["etag"].to_str().unwrap(),
        etag,
        "the format is part of the tag"
    );

    let (code, headers, suffix) = get(DONE, vec![("Range", "bytes=1000-".into())]).await;
    assert_eq!(code, StatusCode::PARTIAL_CONTENT);
    assert_eq!(suffix, full[1000..]);
    assert_eq!(
        headers["content-range"],
        format!("bytes 1000-{}/{length}", length - 1)
    );
    assert_eq!(headers["content-length"], (length - 1000).to_string());
    assert_eq!(headers["etag"].to_str().unwrap(), etag);

    let (code, headers, slice) = get(
        DONE,
        vec![
            ("Range", "bytes=100-299".into()),
            ("If-Range", etag.clone()),
        ],
    )
    .await;
    assert_eq!(code, StatusCode::PARTIAL_CONTENT);
    assert_eq!(slice, full[100..300]);
    assert_eq!(headers["content-range"], format!("bytes 100-299/{length}"));

    let (code, _, tail) = get(DONE, vec![("Range", "bytes=-10".into())]).await;
    assert_eq!(code, StatusCode::PARTIAL_CONTENT);
    assert_eq!(tail, full[length - 10..]);

    for stale in ["\"other\"".to_string(), format!("W/{etag}")] {
        let (code, headers, body) = get(
            DONE,
            vec![("Range", "bytes=100-".into()), ("If-Range", stale)],
        )
        .await;
        assert_eq!(code, StatusCode::OK, "a stale If-Range gets everything");
        assert!(headers.get("content-range").is_none());
        assert_eq!(body, full);
    }
    let (code, _, body) = get(DONE, vec![("Range", "bytes=0-9,20-29".into())]).await;
    assert_eq!(code, StatusCode::OK, "several ranges are ignored");
    assert_eq!(body, full);

    let (code, headers, body) = get(DONE, vec![("Range", format!("bytes={length}-"))]).await;
    assert_eq!(code, StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(headers["content-type"], "application/problem+json");
    assert_eq!(headers["content-range"], format!("bytes */{length}"));
    let problem: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(problem["status"], 416, "{problem}");

    // Another file size is another download: the old tag no longer matches.
    let record = api.store.capture("shop", "done").unwrap().unwrap();
    let (_, status) = with_files("done", "Completed", 2001);
    api.store
        .update_capture_status(&record.uid, &status)
        .unwrap();
    let (code, headers, _) = get(
        DONE,
        vec![("Range", "bytes=100-".into()), ("If-Range", etag.clone())],
    )
    .await;
    assert_eq!(code, StatusCode::OK);
    assert_ne!(headers["etag"].to_str().unwrap(), etag);

    let (code, headers, body) = get(
        "/api/v1/namespaces/shop/captures/busy/pcap",
        vec![("Range", "bytes=100-".into())],
    )
    .await;
    assert_eq!(code, StatusCode::OK, "a running capture is never cut");
    assert!(headers.get("accept-ranges").is_none());
    assert!(headers.get("etag").is_none());
    assert_eq!(body.len(), length, "the same merge, whole");
}

#[tokio::test]
async fn malformed_query_strings_and_path_segments_are_400_problems_naming_the_parameter() {
    let api = api_with(None);
    let admin = api.admin.clone();
    let (status, _, created) = api
        .send(
            Method::POST,
            "/api/v1/namespaces/shop/captures",
            Some(&admin),
            Some(json!({"metadata": {"name": "web"}, "spec": {"podSelector": "app=web", "duration": "1m"}})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    api.calls();

    for (path, names) in [
        (
            "/api/v1/namespaces/shop/captures?phase=a&phase=b",
            "query parameter phase: given more than once: give one phase",
        ),
        (
            "/api/v1/namespaces/shop/captures?limit=abc",
            "query parameter limit: invalid digit found in string: give a whole number 1-1000",
        ),
        (
            "/api/v1/namespaces/shop/captures/web/packets?limit=abc",
            "query parameter limit: invalid digit found in string: give a whole number 1-1000",
        ),
        (
            "/api/v1/namespaces/shop/captures/web/pcap?format=a&format=b",
            "query parameter format: given more than once: give one format, pcapng or pcap",
        ),
        (
            "/api/v1/captures?phase=a&phase=b",
            "query parameter phase: given more than once",
        ),
        (
            "/share/x?format=a&format=b",
            "query parameter format: given more than once",
        ),
        (
            "/api/v1/namespaces/shop/captures/%FF",
            "path segment name: not valid UTF-8",
        ),
    ] {
        let (status, kind, problem) = api.as_admin(Method::GET, path).await;
        assert_eq!(
            (status, kind.as_str()),
            (StatusCode::BAD_REQUEST, "application/problem+json"),
            "GET {path}: {problem}"
        );
        assert_eq!(problem["status"], 400, "{problem}");
        let detail = problem["detail"].as_str().unwrap();
        assert!(detail.starts_with(names), "GET {path}: {detail}");
    }
    assert!(api.calls().is_empty(), "no handler reached the backend");

    // Well-formed queries still work.
    let (status, kind, list) = api
        .as_admin(
            Method::GET,
            "/api/v1/namespaces/shop/captures?phase=Scheduled&limit=10",
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{list}");
    assert_eq!(kind, "application/json");
    assert_eq!(list["items"][0]["metadata"]["name"], "web");
    let (status, _, _) = api
        .as_admin(
            Method::GET,
            "/api/v1/namespaces/shop/captures/web/pcap?format=pcap",
        )
        .await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn a_capture_with_many_targets_answers_the_first_hundred_and_pages_the_rest() {
    let api = api_with(None);
    let spec =
        json!({"metadata": {"name": "big"}, "spec": {"podSelector": "app=web", "duration": "1m"}});
    let (code, _, body) = api
        .send(
            Method::POST,
            "/api/v1/namespaces/shop/captures",
            Some(&api.admin),
            Some(spec),
        )
        .await;
    assert_eq!(code, StatusCode::CREATED, "{body}");
    // 250 pod interfaces on 5 nodes, stored in no particular order.
    let targets: Vec<Value> = (0..250)
        .rev()
        .map(|i| {
            json!({"node": format!("node-{}", i % 5), "namespace": "shop", "pod": format!("web-{i:03}"),
                "interface": "eth0", "state": "Capturing", "packets": 2, "bytes": 100})
        })
        .collect();
    let status: capture_spec::CaptureStatus =
        serde_json::from_value(json!({"phase": "Capturing", "targets": targets})).unwrap();
    let record = api.store.capture("shop", "big").unwrap().unwrap();
    assert!(api
        .store
        .update_capture_status(&record.uid, &status)
        .unwrap());

    let (code, _, got) = api
        .as_admin(Method::GET, "/api/v1/namespaces/shop/captures/big")
        .await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(got["status"]["targets"].as_array().unwrap().len(), 100);
    assert_eq!(got["status"]["targetsOmitted"], 150);
    assert_eq!(got["status"]["targets"][0]["node"], "node-0");
    // The list answers the same way.
    let (_, _, list) = api
        .as_admin(Method::GET, "/api/v1/namespaces/shop/captures")
        .await;
    assert_eq!(list["items"][0]["status"]["targetsOmitted"], 150, "{list}");

    let mut seen = Vec::new();
    let mut path = "/api/v1/namespaces/shop/captures/big/targets?limit=64".to_string();
    loop {
        let (code, _, page) = api.as_admin(Method::GET, &path).await;
        assert_eq!(code, StatusCode::OK, "{page}");
        for target in page["items"].as_array().unwrap() {
            seen.push((
                target["node"].as_str().unwrap().to_string(),
                target["pod"].as_str().unwrap().to_string(),
            ));
        }
        match page["metadata"]["continue"].as_str() {
            Some(token) => {
                path = format!(
                    "/api/v1/namespaces/shop/captures/big/targets?limit=64&continue={token}"
                )
            }
            None => break,
        }
    }
    let mut sorted = seen.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(seen.len(), 250);
    assert_eq!(seen, sorted, "every target once, by node and pod");

    for (query, parameter) in [("limit=0", "limit"), ("continue=nothex", "continue")] {
        let (code, kind, problem) = api
            .as_admin(
                Method::GET,
                &format!("/api/v1/namespaces/shop/captures/big/targets?{query}"),
            )
            .await;
        assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY, "{query}");
        assert_eq!(kind, "application/problem+json");
        assert_eq!(problem["invalidParams"][0]["name"], parameter);
    }
}
