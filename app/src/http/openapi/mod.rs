//! The API described for outside tools: the OpenAPI 3.1 document at `GET
//! /openapi.json`, generated with `utoipa` from the handlers' own
//! `#[utoipa::path]` attributes and body types, and its reference page at
//! `GET /docs` (`page.rs`), rendered here from the document without
//! JavaScript or anything fetched from elsewhere.
//!
//! A handler's attribute lists the answers that handler gives; the answers
//! every route shares, because the layers around the handlers give them
//! (authentication and roles on `/v1`, rate limits, the in-flight limit,
//! the request timeout, the store), are added once by [`SharedAnswers`]. The
//! router's tests check that the document and the router list the same
//! routes (`http::tests`).

mod page;
pub mod schemas;

use std::sync::OnceLock;

use axum::http::header;
use axum::response::{Html, IntoResponse, Response};
use serde_json::json;
use utoipa::OpenApi;
use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::path::Operation;
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Ref, RefOr, ResponseBuilder};

use super::error::ErrorBody;
use super::{payments, reconciliations, resolve};

/// The document's description, shown at the top of `/docs`.
const DESCRIPTION: &str = "paycode's HTTP API: payments by payment code (WeChat Pay, Alipay), \
refunds, revokes, operators' resolutions, reconciliation, health and metrics. Every `/v1` \
request carries `Authorization: Bearer <api key>`; every error has the shape \
`{\"error\": {\"code\", \"message\", \"field\"}}`, where `code` is stable and meant for \
programs. `503` and `429` answers carry `Retry-After`. The reference with every rule is \
docs/api.md.";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "paycode",
        description = DESCRIPTION,
        license(name = "MIT OR Apache-2.0"),
    ),
    paths(
        // In the order a story of one order reads (and a fuzzer's examples
        // run): create it, read it, refund it, then revoke it.
        payments::create,
        payments::list,
        payments::get,
        payments::events,
        payments::create_refund,
        payments::get_refund,
        resolve::order,
        resolve::refund,
        payments::revoke,
        reconciliations::create,
        reconciliations::get,
        super::healthz,
        super::metrics,
        openapi_json,
        docs,
    ),
    components(schemas(ErrorBody)),
    modifiers(&SharedAnswers),
    tags(
        (name = "payments", description = "Create, read, list and revoke payments; an order's events."),
        (name = "refunds", description = "Refunds of a paid payment, idempotent on `refund_no`."),
        (name = "operator resolution", description = "An operator's verdict on an order or refund in `manual_review`."),
        (name = "reconciliation", description = "A channel's statement of one China-time day, matched against the ledger."),
        (name = "operations", description = "Health, metrics, and this document. No key needed."),
    ),
)]
struct ApiDoc;

/// The OpenAPI document, built once.
pub fn document() -> &'static utoipa::openapi::OpenApi {
    static DOCUMENT: OnceLock<utoipa::openapi::OpenApi> = OnceLock::new();
    DOCUMENT.get_or_init(ApiDoc::openapi)
}

/// `GET /openapi.json`
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "operations",
    operation_id = "openapi_document",
    summary = "This document",
    description = "The OpenAPI 3.1 document of this API. No key needed.",
    responses((status = 200, description = "The document.", content_type = "application/json", body = Object)),
)]
pub async fn openapi_json() -> Response {
    static JSON: OnceLock<String> = OnceLock::new();
    let json = JSON.get_or_init(|| {
        document()
            .to_pretty_json()
            .unwrap_or_else(|error| unreachable!("the document serializes: {error}"))
    });
    ([(header::CONTENT_TYPE, "application/json")], json.as_str()).into_response()
}

/// `GET /docs`
#[utoipa::path(
    get,
    path = "/docs",
    tag = "operations",
    operation_id = "reference_page",
    summary = "The reference page",
    description = "This document as an HTML page, served with everything it needs. No key needed.",
    responses((status = 200, description = "The page.", content_type = "text/html; charset=utf-8", body = String)),
)]
pub async fn docs() -> Html<&'static str> {
    static PAGE: OnceLock<String> = OnceLock::new();
    Html(PAGE.get_or_init(|| page::render(document())).as_str())
}

/// The answers the layers around the handlers give, added to every
/// operation they can reach, and the API key's security scheme.
struct SharedAnswers;

/// One shared answer: the status, the component's name, its description,
/// an example, and whether it carries `Retry-After`.
struct Shared {
    status: &'static str,
    name: &'static str,
    description: &'static str,
    code: &'static str,
    message: &'static str,
    retry_after: bool,
    /// `false` for an answer with an empty body (the HTTP server's own).
    has_body: bool,
}

/// Answers every route may give.
const EVERY_ROUTE: [Shared; 3] = [
    Shared {
        status: "408",
        name: "RequestTimeout",
        description: "`request_timeout`: the request, its body included, took longer than `[server] request_timeout_secs` (`import_timeout_secs` for reconciliations); the connection is closed. Repeat it.",
        code: "request_timeout",
        message: "the request took longer than 75 s; repeat it (creating payments and refunds is idempotent)",
        retry_after: false,
        has_body: true,
    },
    Shared {
        status: "503",
        name: "Unavailable",
        description: "`overloaded`: the service is handling `[server] requests_in_flight_max` requests already; on `/v1` and `/healthz` also `unavailable`: the event store is unavailable, or the order changed concurrently. Repeat the same request after `Retry-After`.",
        code: "overloaded",
        message: "the service is handling as many requests as it may; retry shortly",
        retry_after: true,
        has_body: true,
    },
    Shared {
        status: "431",
        name: "HeadTooLarge",
        description: "The request's head (request line and headers) is over 16 KiB, or has more than 64 headers: refused by the HTTP server before any route is found, with an empty body, and the connection closed.",
        code: "",
        message: "",
        retry_after: false,
        has_body: false,
    },
];

/// Answers every `/v1` route may give, besides [`EVERY_ROUTE`].
const V1_ROUTES: [Shared; 4] = [
    Shared {
        status: "401",
        name: "Unauthorized",
        description: "`unauthorized`: no `Authorization: Bearer` header, or an unknown key.",
        code: "unauthorized",
        message: "a valid Authorization: Bearer <api key> header is required",
        retry_after: false,
        has_body: true,
    },
    Shared {
        status: "403",
        name: "Forbidden",
        description: "`forbidden`: the key's role does not allow this endpoint; nothing was read or written.",
        code: "forbidden",
        message: "this key's role (auditor) does not allow creating payments",
        retry_after: false,
        has_body: true,
    },
    Shared {
        status: "429",
        name: "TooManyRequests",
        description: "`too_many_requests`: over the merchant's request rate (`[server] requests_per_sec`), or too many requests with a missing or wrong key from this address. Retry after `Retry-After`.",
        code: "too_many_requests",
        message: "over the merchant's request rate (server.requests_per_sec); retry shortly",
        retry_after: true,
        has_body: true,
    },
    Shared {
        status: "500",
        name: "Internal",
        description: "`internal`: a bug or a corrupt store; logged for an operator.",
        code: "internal",
        message: "internal error; an operator has been told",
        retry_after: false,
        has_body: true,
    },
];

impl utoipa::Modify for SharedAnswers {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "An API key of the merchant (`sk_test_demo` on the embedded defaults).",
                    ))
                    .build(),
            ),
        );
        for shared in EVERY_ROUTE.iter().chain(&V1_ROUTES) {
            components
                .responses
                .insert(shared.name.to_owned(), RefOr::T(response(shared)));
        }
        for (path, item) in &mut openapi.paths.paths {
            let v1 = path.starts_with("/v1/");
            for operation in operations(item) {
                let reachable = EVERY_ROUTE
                    .iter()
                    .chain(if v1 { &V1_ROUTES[..] } else { &[] });
                for shared in reachable {
                    operation
                        .responses
                        .responses
                        .entry(shared.status.to_owned())
                        .or_insert_with(|| RefOr::Ref(Ref::from_response_name(shared.name)));
                }
            }
        }
    }
}

/// The operations of a path, whichever methods it has.
fn operations(item: &mut utoipa::openapi::PathItem) -> impl Iterator<Item = &mut Operation> {
    [
        &mut item.get,
        &mut item.put,
        &mut item.post,
        &mut item.delete,
        &mut item.options,
        &mut item.head,
        &mut item.patch,
        &mut item.trace,
    ]
    .into_iter()
    .filter_map(Option::as_mut)
}

fn response(shared: &Shared) -> utoipa::openapi::Response {
    if !shared.has_body {
        return ResponseBuilder::new()
            .description(shared.description)
            .build();
    }
    let content = ContentBuilder::new()
        .schema(Some(Ref::from_schema_name("ErrorBody")))
        .example(Some(json!({"error": {
            "code": shared.code, "message": shared.message, "field": null
        }})))
        .build();
    let mut builder = ResponseBuilder::new()
        .description(shared.description)
        .content("application/json", content);
    if shared.retry_after {
        builder = builder.header(
            "Retry-After",
            HeaderBuilder::new()
                .schema(
                    ObjectBuilder::new()
                        .schema_type(Type::Integer)
                        .minimum(Some(1)),
                )
                .description(Some("Whole seconds to wait before repeating the request."))
                .build(),
        );
    }
    builder.build()
}
