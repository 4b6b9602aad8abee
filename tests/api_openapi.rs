//! The OpenAPI document at `GET /api/v1/openapi.json`, against the real server: it is served
//! without a token, it is valid OpenAPI 3 (checked by openapi-spec-validator, which `.ci/run`
//! installs), it lists every route of the REST contract, each documented path answers exactly the
//! documented methods (the `Allow` header of a 405 is the router's own list) with the documented
//! security, the router is assembled only from documented handlers, and real answers — a capture
//! of a pod with its files, share links, a schedule, pods, problems — match the schemas the
//! document gives for them.

mod api_common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::Duration;

use api_common::traffic::burst_from_pod;
use api_common::{Answer, Api, Pod, UdpSink};
use serde_json::{json, Value};

const DOCUMENT: &str = "/api/v1/openapi.json";
const CAPTURES: &str = "/api/v1/namespaces/default/captures";
/// The version of openapi-spec-validator `.ci/run` installs.
const VALIDATOR: &str = "openapi-spec-validator==0.9.0";

/// The REST contract podcap promises (the README's API section): every one of these must be documented (and, through
/// [`documented_paths_answer_exactly_the_documented_methods`], served).
const CONTRACT: &[(&str, &str)] = &[
    ("get", "/api/v1/namespaces/{namespace}/captures"),
    ("post", "/api/v1/namespaces/{namespace}/captures"),
    ("get", "/api/v1/namespaces/{namespace}/captures/{name}"),
    (
        "post",
        "/api/v1/namespaces/{namespace}/captures/{name}/stop",
    ),
    ("delete", "/api/v1/namespaces/{namespace}/captures/{name}"),
    (
        "get",
        "/api/v1/namespaces/{namespace}/captures/{name}/files",
    ),
    (
        "get",
        "/api/v1/namespaces/{namespace}/captures/{name}/files/{id}",
    ),
    ("get", "/api/v1/namespaces/{namespace}/captures/{name}/pcap"),
    ("get", "/api/v1/namespaces/{namespace}/captures/{name}/live"),
    (
        "post",
        "/api/v1/namespaces/{namespace}/captures/{name}/shares",
    ),
    (
        "get",
        "/api/v1/namespaces/{namespace}/captures/{name}/shares",
    ),
    (
        "delete",
        "/api/v1/namespaces/{namespace}/captures/{name}/shares/{id}",
    ),
    ("get", "/share/{token}"),
    ("get", "/api/v1/namespaces/{namespace}/schedules"),
    ("post", "/api/v1/namespaces/{namespace}/schedules"),
    ("get", "/api/v1/namespaces/{namespace}/schedules/{name}"),
    ("put", "/api/v1/namespaces/{namespace}/schedules/{name}"),
    ("delete", "/api/v1/namespaces/{namespace}/schedules/{name}"),
    ("get", "/api/v1/namespaces/{namespace}/pods"),
    ("get", "/api/v1/openapi.json"),
    ("get", "/healthz"),
    ("get", "/readyz"),
    ("get", "/metrics"),
];

/// The methods an operation can be documented under, as OpenAPI names them.
const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

/// The document, fetched without a token.
fn document(api: &Api) -> Value {
    let answer = api.get_as(DOCUMENT, Some(""), &[]);
    assert_eq!(
        answer.status,
        200,
        "the document needs no token: {}",
        String::from_utf8_lossy(&answer.body)
    );
    assert_eq!(answer.content_type, "application/json");
    answer.json()
}

/// (path, method) of every documented operation.
fn operations(document: &Value) -> BTreeSet<(String, String)> {
    let paths = document["paths"].as_object().expect("paths is an object");
    paths
        .iter()
        .flat_map(|(path, item)| {
            let item = item.as_object().expect("a path item is an object");
            METHODS
                .iter()
                .filter(|m| item.contains_key(**m))
                .map(move |m| (path.clone(), m.to_string()))
        })
        .collect()
}

/// One answer for the checker: the operation it answers and what came back.
fn sample(path: &str, method: &str, answer: &Answer) -> Value {
    let body = if answer.body.is_empty() {
        Value::Null
    } else if answer.content_type.contains("json") {
        answer.json()
    } else {
        // Binary or text bodies are checked by content type only.
        json!("")
    };
    json!({
        "path": path, "method": method, "status": answer.status,
        "contentType": answer.content_type, "body": body,
    })
}

/// Runs `api_openapi_check.py`: validates the document and the answers against it.
fn check_with_validator(document: &Value, answers: &[Value]) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/api_openapi_check.py");
    let mut child = Command::new("python3")
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("running python3 ({e}): install it and `pip install {VALIDATOR}`")
        });
    let input = json!({"document": document, "answers": answers}).to_string();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !stderr.contains("ModuleNotFoundError"),
        "the validator is missing: `pip install {VALIDATOR}` (.ci/run does)\n{stderr}"
    );
    assert!(
        output.status.success(),
        "the OpenAPI check failed:\n{stdout}\n{stderr}"
    );
    eprintln!("{}", stdout.trim());
}

/// A raw request with any method and no token.
fn request(agent: &ureq::Agent, method: &str, url: &str) -> (u16, Vec<(String, String)>, String) {
    let request = ureq::http::Request::builder()
        .method(method.to_uppercase().as_str())
        .uri(url)
        .body(())
        .unwrap();
    let mut response = agent.run(request).expect("the request reached the server");
    let headers = response
        .headers()
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or_default().to_string()))
        .collect();
    let body = response.body_mut().read_to_string().unwrap_or_default();
    (response.status().as_u16(), headers, body)
}

/// `path` with every `{parameter}` filled in with a value that names nothing.
fn concrete(path: &str) -> String {
    path.split('/')
        .map(|part| match part {
            "{namespace}" => "default",
            "{token}" => "pcs_nothing",
            p if p.starts_with('{') => "nothing",
            p => p,
        })
        .collect::<Vec<_>>()
        .join("/")
}

#[test]
fn the_document_is_valid_openapi_3_served_without_a_token() {
    let api = Api::start();
    let document = document(&api);
    assert!(
        document["openapi"]
            .as_str()
            .is_some_and(|v| v.starts_with("3.")),
        "OpenAPI 3.x: {}",
        document["openapi"]
    );
    assert!(document["info"]["title"].is_string() && document["info"]["version"].is_string());
    let description = document["paths"][DOCUMENT]["get"]["description"]
        .as_str()
        .unwrap_or_default();
    assert!(
        description.contains("without a token"),
        "the document says it needs no token: {description}"
    );
    // With a token it is the same document.
    assert_eq!(api.get(DOCUMENT).json(), document);
    check_with_validator(&document, &[]);
}

#[test]
fn every_route_of_the_contract_is_documented_with_its_security() {
    let api = Api::start();
    let document = document(&api);
    let operations = operations(&document);
    for (method, path) in CONTRACT {
        assert!(
            operations.contains(&(path.to_string(), method.to_string())),
            "{} {path} is not documented; documented: {operations:#?}",
            method.to_uppercase()
        );
    }
    let scheme = &document["components"]["securitySchemes"]["bearer"];
    assert_eq!(
        (scheme["type"].as_str(), scheme["scheme"].as_str()),
        (Some("http"), Some("bearer"))
    );
    for (path, method) in &operations {
        let operation = &document["paths"][path][method];
        let security = &operation["security"];
        let where_ = format!("{} {path}", method.to_uppercase());
        if path.starts_with("/api/") && path != DOCUMENT {
            assert_eq!(
                security,
                &json!([{"bearer": []}]),
                "{where_} needs the bearer token"
            );
            for status in ["401", "403"] {
                assert!(
                    operation["responses"][status].is_object(),
                    "{where_} documents {status}"
                );
            }
        } else {
            assert!(security.is_null(), "{where_} needs no token: {security}");
        }
        assert!(
            operation["operationId"].is_string() && operation["summary"].is_string(),
            "{where_} has an operation id and a summary"
        );
        for (status, response) in operation["responses"].as_object().unwrap() {
            let problem = &response["content"]["application/problem+json"]["schema"]["$ref"];
            if status.starts_with('4') && response.get("$ref").is_none() {
                assert_eq!(
                    problem, "#/components/schemas/Problem",
                    "{where_} {status} is a problem"
                );
            }
        }
    }
}

#[test]
fn documented_paths_answer_exactly_the_documented_methods() {
    let api = Api::start();
    let document = document(&api);
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into();
    let mut documented: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (path, method) in operations(&document) {
        documented.entry(path).or_default().insert(method);
    }
    for (path, methods) in &documented {
        let url = format!("{}{}", api.base, concrete(path));
        // A method no route uses: the 405's Allow header is the router's list for this path.
        assert!(
            !methods.contains("patch"),
            "PATCH is now documented: probe with another method"
        );
        let (status, headers, body) = request(&agent, "patch", &url);
        assert_eq!(status, 405, "PATCH {path}: {body}");
        let allow = headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("allow"))
            .map(|(_, v)| v.clone())
            .unwrap_or_default();
        let served: BTreeSet<String> = allow
            .split(',')
            .map(|m| m.trim().to_lowercase())
            .filter(|m| !m.is_empty() && m != "head")
            .collect();
        assert_eq!(&served, methods, "{path}: the router serves {allow:?}");
        // Each documented operation is served, and needs a token exactly when documented so.
        for method in methods {
            let secured = document["paths"][path][method]["security"].is_array();
            let (status, _, body) = request(&agent, method, &url);
            let where_ = format!("{} {path}", method.to_uppercase());
            assert!(
                !body.contains("no such route"),
                "{where_} fell through to the fallback"
            );
            if secured {
                assert_eq!(status, 401, "{where_} without a token: {body}");
            } else {
                assert!(
                    ![401, 405].contains(&status),
                    "{where_} without a token answered {status}: {body}"
                );
            }
        }
    }
    // And a path nobody documented is not served.
    let (status, _, body) = request(&agent, "get", &format!("{}/api/v1/nothing", api.base));
    assert_eq!(status, 404);
    assert!(
        body.contains("openapi.json"),
        "the fallback points at the document: {body}"
    );
}

/// The router is `routes()` in server.rs plus `api()` in routes/mod.rs, both made only of
/// `routes!(...)` calls, so every route has a `#[utoipa::path]` and is in the document. A route
/// added with plain axum (`.route(...)`) would be served but not documented: refuse it here.
#[test]
fn routes_are_registered_only_through_the_documented_handler_list() {
    let source = concat!(env!("CARGO_MANIFEST_DIR"), "/../capture-api/src");
    let mut files = vec![format!("{source}/server.rs")];
    for entry in std::fs::read_dir(format!("{source}/routes")).unwrap() {
        files.push(entry.unwrap().path().display().to_string());
    }
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        for plain in [
            ".route(",
            ".route_service(",
            ".nest_service(",
            "axum::routing::",
        ] {
            assert!(
                !text.contains(plain),
                "{file} registers a route with `{plain}`: use `.routes(routes!(handler))` with a \
                 `#[utoipa::path]` on the handler, so that the route is in the OpenAPI document"
            );
        }
    }
}

#[test]
fn schemas_describe_the_json_the_server_reads_and_writes() {
    let api = Api::start();
    let document = document(&api);
    let schemas = &document["components"]["schemas"];
    let properties = |name: &str| -> BTreeSet<String> {
        schemas[name]["properties"]
            .as_object()
            .unwrap_or_else(|| panic!("schema {name} has properties: {}", schemas[name]))
            .keys()
            .cloned()
            .collect()
    };

    let spec = properties("CaptureSpec");
    for field in [
        "podSelector",
        "nodeSelector",
        "filters",
        "startTime",
        "endTime",
        "duration",
        "snapLength",
        "maxBytes",
        "maxPackets",
        "rotation",
        "format",
    ] {
        assert!(spec.contains(field), "CaptureSpec has {field}: {spec:?}");
    }
    assert_eq!(
        schemas["CaptureSpec"]["additionalProperties"], false,
        "unknown spec fields are refused"
    );
    assert_eq!(schemas["CaptureDuration"]["type"], "string");
    assert_eq!(schemas["Filter"]["type"], "array");
    assert_eq!(
        schemas["Filter"]["items"]["$ref"],
        "#/components/schemas/FilterRule"
    );
    let one_of_types = |name: &str| -> Vec<String> {
        schemas[name]["oneOf"]
            .as_array()
            .unwrap_or_else(|| panic!("{name} is oneOf: {}", schemas[name]))
            .iter()
            .map(|s| s["type"].as_str().unwrap_or_default().to_string())
            .collect()
    };
    assert_eq!(one_of_types("Protocol"), ["string", "integer"]);
    assert_eq!(one_of_types("PortRange"), ["integer", "string"]);
    assert_eq!(
        schemas["Phase"]["enum"],
        json!(["Scheduled", "Capturing", "Completed", "Stopped", "Failed"])
    );
    assert_eq!(
        schemas["TargetState"]["enum"],
        json!([
            "Waiting",
            "Capturing",
            "Completed",
            "Stopped",
            "Failed",
            "Gone"
        ])
    );
    assert_eq!(
        schemas["TargetStatus"]["properties"]["files"]["items"]["$ref"],
        "#/components/schemas/FileStatus"
    );
    assert_eq!(
        schemas["CaptureStatus"]["properties"]["startedAt"]["format"],
        "date-time"
    );

    let problem = properties("Problem");
    assert_eq!(
        problem,
        ["detail", "invalidParams", "status", "title", "type"]
            .map(String::from)
            .into()
    );
    assert_eq!(
        schemas["Problem"]["properties"]["invalidParams"]["items"]["$ref"],
        "#/components/schemas/InvalidParam"
    );
    assert_eq!(
        properties("InvalidParam"),
        ["name", "reason"].map(String::from).into()
    );

    let merged = &document["paths"]["/api/v1/namespaces/{namespace}/captures/{name}/pcap"]["get"];
    let content = merged["responses"]["200"]["content"].as_object().unwrap();
    assert_eq!(
        content.keys().map(String::as_str).collect::<BTreeSet<_>>(),
        ["application/vnd.tcpdump.pcap", "application/x-pcapng"].into()
    );
    let format = merged["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "format")
        .expect("?format= is documented");
    assert_eq!(format["in"], "query");
    let range =
        &document["paths"]["/api/v1/namespaces/{namespace}/captures/{name}/files/{id}"]["get"];
    assert!(range["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p["name"] == "Range" && p["in"] == "header"));
    assert!(range["responses"]["206"].is_object() && range["responses"]["416"].is_object());
}

#[test]
fn real_answers_match_their_documented_schemas() {
    let pod = Pod::new();
    let _sink = UdpSink::bind(pod.host_v4.into(), 7710);
    let api = Api::start();
    let document = document(&api);
    let mut answers = Vec::new();
    let capture_path = "/api/v1/namespaces/{namespace}/captures/{name}";
    let captures_path = "/api/v1/namespaces/{namespace}/captures";

    let created = api.post(
        CAPTURES,
        &json!({"apiVersion": "podcap.io/v1alpha1", "kind": "PacketCapture", "metadata": {"name": "documented"}, "spec": {
            "podSelector": {"matchLabels": {"podcap.io/netns": pod.netns}},
            "filters": [{"protocol": "UDP", "ports": [7710, "7711:7712"]}, {"protocol": 47}],
            "duration": "2s",
            "rotation": {"maxFiles": 4, "maxFileBytes": 1000000},
        }}),
    );
    assert_eq!(
        created.status,
        201,
        "{}",
        String::from_utf8_lossy(&created.body)
    );
    answers.push(sample(captures_path, "post", &created));
    burst_from_pod(&pod, SocketAddr::new(pod.host_v4.into(), 7710), 12, 64);
    api.wait_for_phase(
        "default",
        "documented",
        &["Completed"],
        Duration::from_secs(15),
    );

    let one = format!("{CAPTURES}/documented");
    let capture = api.get(&one);
    assert!(!capture.json()["status"]["targets"][0]["files"]
        .as_array()
        .unwrap()
        .is_empty());
    answers.push(sample(capture_path, "get", &capture));
    answers.push(sample(captures_path, "get", &api.get(CAPTURES)));
    answers.push(sample(
        captures_path,
        "get",
        &api.get(&format!("{CAPTURES}?phase=Done")),
    ));
    let files = api.get(&format!("{one}/files"));
    answers.push(sample(&format!("{capture_path}/files"), "get", &files));
    let file_id = files.json()["items"][0]["id"].as_str().unwrap().to_string();
    let file = api.get(&format!("{one}/files/{file_id}"));
    answers.push(sample(
        &format!("{capture_path}/files/{{id}}"),
        "get",
        &file,
    ));
    let range = api.get_as(
        &format!("{one}/files/{file_id}"),
        None,
        &[("Range", "bytes=0-15")],
    );
    answers.push(sample(
        &format!("{capture_path}/files/{{id}}"),
        "get",
        &range,
    ));
    let merged = api.get(&format!("{one}/pcap?format=pcap"));
    answers.push(sample(&format!("{capture_path}/pcap"), "get", &merged));
    answers.push(sample(
        &format!("{capture_path}/pcap"),
        "get",
        &api.get(&format!("{one}/pcap?format=pcapx")),
    ));
    answers.push(sample(
        &format!("{capture_path}/live"),
        "get",
        &api.get(&format!("{one}/live")),
    ));

    let shares = format!("{one}/shares");
    let share = api.post(&shares, &json!({"expiresIn": "1h"}));
    answers.push(sample(&format!("{capture_path}/shares"), "post", &share));
    answers.push(sample(
        &format!("{capture_path}/shares"),
        "post",
        &api.post(&shares, &json!({"expiresIn": "9d"})),
    ));
    let token = share.json()["token"].as_str().unwrap().to_string();
    answers.push(sample(
        "/share/{token}",
        "get",
        &api.get_as(&format!("/share/{token}"), Some(""), &[]),
    ));
    let share_id = share.json()["id"].as_str().unwrap().to_string();
    answers.push(sample(
        &format!("{capture_path}/shares/{{id}}"),
        "delete",
        &api.delete(&format!("{shares}/{share_id}")),
    ));
    answers.push(sample(
        "/share/{token}",
        "get",
        &api.get_as(&format!("/share/{token}"), Some(""), &[]),
    ));
    answers.push(sample(
        &format!("{capture_path}/shares"),
        "get",
        &api.get(&shares),
    ));
    let viewer = api.create_token("viewer", &["default"]);
    let refused = api.post_as(&shares, Some(&viewer), &json!({}));
    refused.problem(403);
    answers.push(sample(&format!("{capture_path}/shares"), "post", &refused));

    let invalid = api.post(
        CAPTURES,
        &json!({"spec": {"duration": 600, "filters": [{"protocol": "ICMP", "ports": [1]}]}}),
    );
    let problem = invalid.problem(422);
    assert!(
        !problem["invalidParams"].as_array().unwrap().is_empty(),
        "{problem}"
    );
    answers.push(sample(captures_path, "post", &invalid));
    answers.push(sample(
        captures_path,
        "post",
        &api.post(CAPTURES, &json!({"spek": {}})),
    ));
    answers.push(sample(
        capture_path,
        "get",
        &api.get(&format!("{CAPTURES}/missing")),
    ));
    answers.push(sample(
        captures_path,
        "get",
        &api.get_as(CAPTURES, Some(""), &[]),
    ));
    answers.push(sample(
        captures_path,
        "get",
        &api.get_as(CAPTURES, Some("pcp_wrong"), &[]),
    ));
    answers.push(sample(
        &format!("{capture_path}/stop"),
        "post",
        &api.post(&format!("{one}/stop"), &json!({})),
    ));

    let schedules_path = "/api/v1/namespaces/{namespace}/schedules";
    let schedules = "/api/v1/namespaces/default/schedules";
    let schedule = api.post(
        schedules,
        &json!({"metadata": {"name": "nightly"}, "spec": {
            "schedule": "0 2 * * *", "timeZone": "Europe/Berlin", "concurrencyPolicy": "Forbid",
            "template": {"podSelector": {"matchExpressions": [{"key": "app", "operator": "In", "values": ["web"]}]}, "duration": "10m"},
        }}),
    );
    assert_eq!(
        schedule.status,
        201,
        "{}",
        String::from_utf8_lossy(&schedule.body)
    );
    answers.push(sample(schedules_path, "post", &schedule));
    answers.push(sample(
        &format!("{schedules_path}/{{name}}"),
        "get",
        &api.get(&format!("{schedules}/nightly")),
    ));
    answers.push(sample(schedules_path, "get", &api.get(schedules)));
    answers.push(sample(
        schedules_path,
        "post",
        &api.post(
            schedules,
            &json!({"spec": {"schedule": "61 * * * *", "template": {}}}),
        ),
    ));

    answers.push(sample(
        "/api/v1/namespaces/{namespace}/pods",
        "get",
        &api.get(&format!(
            "/api/v1/namespaces/default/pods?selector=podcap.io/netns%3D{}",
            pod.netns
        )),
    ));
    answers.push(sample(
        "/api/v1/namespaces/{namespace}/pods",
        "get",
        &api.get("/api/v1/namespaces/default/pods?selector=in%20in"),
    ));
    answers.push(sample(capture_path, "delete", &api.delete(&one)));
    answers.push(sample(
        "/healthz",
        "get",
        &api.get_as("/healthz", Some(""), &[]),
    ));
    answers.push(sample(
        "/readyz",
        "get",
        &api.get_as("/readyz", Some(""), &[]),
    ));
    answers.push(sample(
        "/metrics",
        "get",
        &api.get_as("/metrics", Some(""), &[]),
    ));
    answers.push(sample(
        DOCUMENT,
        "get",
        &api.get_as(DOCUMENT, Some(""), &[]),
    ));

    let statuses: BTreeSet<u16> = answers
        .iter()
        .map(|a| a["status"].as_u64().unwrap() as u16)
        .collect();
    for status in [200, 201, 204, 206, 400, 401, 403, 404, 409, 410, 422] {
        assert!(
            statuses.contains(&status),
            "an answer with status {status} is checked: {statuses:?}"
        );
    }
    check_with_validator(&document, &answers);
}

/// The links a client or a stateful fuzzer follows from what an operation created: each names
/// an operation of the document and gives exactly that operation's path parameters.
#[test]
fn links_lead_from_created_objects_to_the_operations_that_take_them() {
    let api = Api::start();
    let document = document(&api);
    let mut by_id: BTreeMap<String, Value> = BTreeMap::new();
    for item in document["paths"].as_object().expect("paths").values() {
        for operation in item.as_object().expect("path item").values() {
            if let Some(id) = operation["operationId"].as_str() {
                by_id.insert(id.to_string(), operation.clone());
            }
        }
    }
    let expected: [(&str, &str, &[&str]); 5] = [
        (
            "createCapture",
            "201",
            &[
                "getCapture",
                "stopCapture",
                "deleteCapture",
                "listCaptureFiles",
                "previewCapturePackets",
                "captureTimeline",
                "downloadMergedCapture",
                "createShare",
                "listShares",
                "createDownloadTicket",
            ],
        ),
        ("createShare", "201", &["revokeShare", "downloadShared"]),
        ("createDownloadTicket", "201", &["downloadWithTicket"]),
        (
            "createSchedule",
            "201",
            &["getSchedule", "replaceSchedule", "deleteSchedule"],
        ),
        ("listCaptureFiles", "200", &["downloadCaptureFile"]),
    ];
    for (source, status, targets) in expected {
        let links = by_id[source]["responses"][status]["links"]
            .as_object()
            .unwrap_or_else(|| panic!("{source} {status} has no links"));
        let named: BTreeSet<&str> = links.keys().map(String::as_str).collect();
        assert_eq!(
            named,
            targets.iter().copied().collect(),
            "links of {source}"
        );
        for (name, link) in links {
            let target = link["operationId"].as_str().expect("operationId");
            let path_parameters: BTreeSet<String> = by_id[target]["parameters"]
                .as_array()
                .map(|parameters| {
                    parameters
                        .iter()
                        .filter(|p| p["in"] == "path")
                        .map(|p| p["name"].as_str().expect("name").to_string())
                        .collect()
                })
                .unwrap_or_default();
            let given: BTreeSet<String> = link["parameters"]
                .as_object()
                .expect("link parameters")
                .keys()
                .cloned()
                .collect();
            assert_eq!(given, path_parameters, "link {name} of {source}");
        }
    }
}
