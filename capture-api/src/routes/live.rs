//! `GET .../captures/{name}/live`: a pcapng stream of a running capture, for
//! `curl -N -H "Authorization: Bearer $TOKEN" .../live | wireshark -k -i -`. One interface per
//! pod that is capturing when the stream starts (reconnect to see pods that join later). The
//! capture never waits for a watcher: a watcher that falls behind misses whole chunks of
//! packets, counted in the `podcap_live_chunks_skipped_total` metric, and the stream stays valid.

use axum::extract::State;

use super::extract::Path;
use axum::response::Response;
use capture_spec::Phase;

use super::captures::find;
use crate::problem::Problem;
use crate::state::AppState;

use super::openapi::{CapturePath, PcapngBytes};

#[utoipa::path(
    get,
    path = "/namespaces/{namespace}/captures/{name}/live",
    tag = "downloads",
    operation_id = "streamCaptureLive",
    summary = "A live pcapng stream of a running capture",
    description = "For `curl -N -H \"Authorization: Bearer $TOKEN\" .../live | wireshark -k -i -`. One \
        interface per pod capturing when the stream starts; the stream ends with the capture. A \
        watcher that falls behind misses whole chunks of packets and the stream stays valid.",
    params(CapturePath),
    responses(
        (status = 200, description = "pcapng, streamed until the capture ends or the client leaves.", content((PcapngBytes = "application/x-pcapng")),
            headers(("Cache-Control" = String, description = "`no-store`"))),
        (status = 400, description = "A malformed path segment (a namespace that is not a DNS-1123 label, or not UTF-8 once percent-decoded); the detail names it and what to write instead.", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such capture.", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The capture is not `Capturing`, or no pod is capturing right now.", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn live(
    State(state): State<AppState>,
    Path((namespace, name)): Path<(String, String)>,
) -> Result<Response, Problem> {
    let record = find(&state, &namespace, &name)?;
    if record.phase() != Phase::Capturing {
        return Err(Problem::conflict(format!(
            "capture {namespace}/{name} is {}, not Capturing: download it with GET .../captures/{name}/pcap",
            record.phase()
        )));
    }
    state.backend.live(&record).await
}
