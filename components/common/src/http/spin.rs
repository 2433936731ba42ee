//! Spin's HTTP types to and from the app's own ([`crate::api`]): the edge's job, so the platform knows
//! nothing of requests and responses.

use crate::api::{Request, Response};

/// Reads a Spin request into a [`Request`], refusing bodies over `max_body`
/// bytes with `413` before reading them whole.
pub async fn read_request(
    request: spin_sdk::http::IncomingRequest,
    max_body: usize,
) -> Result<Request, Response> {
    use futures::StreamExt;

    let method = request.method().to_string();
    let path_with_query = request.path_with_query().unwrap_or_else(|| "/".into());
    let (path, query) = match path_with_query.split_once('?') {
        Some((p, q)) => (p.to_owned(), q.to_owned()),
        None => (path_with_query, String::new()),
    };
    let headers = crate::platform::spin::header_pairs(&request.headers());
    let too_large =
        || Response::error(413, format!("request body is larger than {max_body} bytes"));
    if let Some(length) = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .and_then(|(_, v)| v.trim().parse::<usize>().ok())
    {
        if length > max_body {
            return Err(too_large());
        }
    }
    let mut body = Vec::new();
    let mut stream = request.into_body_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|_| Response::error(400, "could not read the request body"))?;
        if body.len() + chunk.len() > max_body {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Request {
        method,
        path,
        query,
        headers,
        body,
    })
}

/// Sends `response` and finishes its body, so the client has its answer while the handler keeps working.
pub async fn send_response(out: spin_sdk::http::ResponseOutparam, response: Response) {
    use spin_sdk::http::{Fields, OutgoingResponse};

    let headers: Vec<(String, Vec<u8>)> = response
        .headers
        .into_iter()
        .map(|(n, v)| (n, v.into_bytes()))
        .collect();
    let fields = Fields::from_list(&headers).unwrap_or_else(|_| Fields::new());
    let outgoing = OutgoingResponse::new(fields);
    let _ = outgoing.set_status_code(response.status);
    if let Err(e) = out.set_with_body(outgoing, response.body).await {
        tracing::warn!(error = ?e, "writing the response body failed");
    }
}
