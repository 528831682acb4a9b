//! `GET /docs`: the OpenAPI document rendered on the server as one HTML
//! page: the operations grouped by tag, each with its parameters, request
//! body, answers and examples, then the schemas. Plain HTML with a small
//! inline style sheet: no JavaScript, nothing loaded from elsewhere.

use maud::{DOCTYPE, Markup, PreEscaped, html};
use serde_json::Value;

/// The methods an OpenAPI path item may hold, in the order shown.
const METHODS: [&str; 8] = [
    "get", "post", "put", "patch", "delete", "head", "options", "trace",
];

const STYLE: &str = "
body { font: 16px/1.5 system-ui, sans-serif; margin: 0 auto; max-width: 60rem; padding: 1rem 2rem; color: #1a1a1a; background: #fff; }
h1, h2, h3, h4 { line-height: 1.25; }
h2 { border-bottom: 2px solid #ccc; padding-bottom: .25rem; margin-top: 2.5rem; }
h3 { margin-top: 2rem; }
section.operation { border-left: 4px solid #36c; padding-left: 1rem; }
code, pre { font-family: ui-monospace, monospace; font-size: .9em; }
pre { background: #f4f4f4; padding: .75rem; overflow-x: auto; border-radius: 4px; }
table { border-collapse: collapse; width: 100%; margin: .5rem 0 1rem; }
th, td { border: 1px solid #ccc; padding: .3rem .5rem; text-align: left; vertical-align: top; }
th { background: #f0f0f0; }
.method { display: inline-block; min-width: 4rem; font-weight: bold; }
nav ul { columns: 2; }
a { color: #1a4fa0; }
";

/// The whole page for `document`.
pub fn render(document: &utoipa::openapi::OpenApi) -> String {
    let document = serde_json::to_value(document)
        .unwrap_or_else(|error| unreachable!("the document serializes: {error}"));
    page(&document).into_string()
}

fn page(document: &Value) -> Markup {
    let title = document["info"]["title"].as_str().unwrap_or("API");
    let version = document["info"]["version"].as_str().unwrap_or("");
    let tags: Vec<&Value> = document["tags"]
        .as_array()
        .map(|tags| tags.iter().collect())
        .unwrap_or_default();
    let operations = operations(document);
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " API reference" }
                style { (PreEscaped(STYLE)) }
            }
            body {
                header {
                    h1 { (title) " API reference " small { "version " (version) } }
                    p { (text(document["info"]["description"].as_str().unwrap_or(""))) }
                    p {
                        "The machine-readable document: "
                        a href="/openapi.json" { code { "/openapi.json" } }
                        " (OpenAPI " (document["openapi"].as_str().unwrap_or("")) ")."
                    }
                }
                nav aria-label="Endpoints" {
                    h2 { "Endpoints" }
                    ul {
                        @for operation in &operations {
                            li {
                                a href={ "#" (operation.id) } {
                                    code { (operation.method.to_uppercase()) " " (operation.path) }
                                }
                                " " (operation.body["summary"].as_str().unwrap_or(""))
                            }
                        }
                    }
                }
                main {
                    @for tag in &tags {
                        @let name = tag["name"].as_str().unwrap_or("");
                        section aria-labelledby={ "tag-" (slug(name)) } {
                            h2 id={ "tag-" (slug(name)) } { (capitalized(name)) }
                            p { (text(tag["description"].as_str().unwrap_or(""))) }
                            @for operation in operations.iter().filter(|o| o.tags.contains(&name)) {
                                (operation_section(document, operation))
                            }
                        }
                    }
                    (schemas(document))
                }
            }
        }
    }
}

/// One operation of the document.
struct Operation<'a> {
    id: String,
    method: &'a str,
    path: &'a str,
    tags: Vec<&'a str>,
    body: &'a Value,
}

fn operations(document: &Value) -> Vec<Operation<'_>> {
    let mut found = Vec::new();
    let Some(paths) = document["paths"].as_object() else {
        return found;
    };
    for (path, item) in paths {
        for method in METHODS {
            let body = &item[method];
            if body.is_null() {
                continue;
            }
            found.push(Operation {
                id: body["operationId"]
                    .as_str()
                    .map_or_else(|| slug(&format!("{method} {path}")), str::to_owned),
                method,
                path,
                tags: body["tags"]
                    .as_array()
                    .map(|tags| tags.iter().filter_map(Value::as_str).collect())
                    .unwrap_or_default(),
                body,
            });
        }
    }
    found
}

fn operation_section(document: &Value, operation: &Operation<'_>) -> Markup {
    let body = operation.body;
    let secured = body["security"].as_array().is_some_and(|s| !s.is_empty());
    html! {
        section.operation aria-labelledby=(operation.id) {
            h3 id=(operation.id) {
                span.method { (operation.method.to_uppercase()) }
                code { (operation.path) }
                " — " (body["summary"].as_str().unwrap_or(""))
            }
            p { (text(body["description"].as_str().unwrap_or(""))) }
            p {
                @if secured {
                    "Authentication: " code { "Authorization: Bearer <api key>" } "."
                } @else {
                    "No key needed."
                }
            }
            @if let Some(parameters) = body["parameters"].as_array() {
                h4 { "Parameters" }
                table {
                    thead { tr { th scope="col" { "name" } th scope="col" { "in" } th scope="col" { "required" } th scope="col" { "type" } th scope="col" { "description" } } }
                    tbody {
                        @for parameter in parameters {
                            tr {
                                td { code { (parameter["name"].as_str().unwrap_or("")) } }
                                td { (parameter["in"].as_str().unwrap_or("")) }
                                td { (if parameter["required"].as_bool() == Some(true) { "yes" } else { "no" }) }
                                td { (schema_type(&parameter["schema"])) }
                                td { (text(parameter["description"].as_str().unwrap_or(""))) }
                            }
                        }
                    }
                }
            }
            @if let Some(content) = body["requestBody"]["content"].as_object() {
                h4 { "Request body" }
                @for (media_type, media) in content {
                    p { code { (media_type) } ": " (schema_type(&media["schema"])) }
                    @if let Some(example) = example(media, resolve(document, &media["schema"], "schemas")) {
                        pre aria-label={ "Example request body, " (media_type) } { code { (example) } }
                    }
                }
            }
            h4 { "Answers" }
            table {
                thead { tr { th scope="col" { "status" } th scope="col" { "meaning" } th scope="col" { "body" } } }
                tbody {
                    @if let Some(responses) = body["responses"].as_object() {
                        @for (status, response) in responses {
                            tr {
                                td { code { (status) } }
                                td { (text(resolve(document, response, "responses")["description"].as_str().unwrap_or(""))) }
                                td { (response_body(document, response)) }
                            }
                        }
                    }
                }
            }
            @if let Some(responses) = body["responses"].as_object() {
                @for (status, response) in responses {
                    @if let Some(content) = response["content"].as_object() {
                        @for (media_type, media) in content {
                            @if let Some(example) = media["example"].as_object().map(|_| &media["example"]) {
                                details {
                                    summary { "Example " code { (status) } " answer" }
                                    pre aria-label={ "Example " (status) " answer, " (media_type) } { code { (pretty(example)) } }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// What `value` stands for: the component it refers to (`$ref`) in
/// `components.{kind}`, else itself.
fn resolve<'a>(document: &'a Value, value: &'a Value, kind: &str) -> &'a Value {
    match value["$ref"].as_str().and_then(|r| r.rsplit('/').next()) {
        Some(name) => &document["components"][kind][name],
        None => value,
    }
}

fn response_body(document: &Value, response: &Value) -> Markup {
    let shared = response["$ref"].as_str().and_then(|r| r.rsplit('/').next());
    let response = resolve(document, response, "responses");
    html! {
        @if let Some(content) = response["content"].as_object() {
            @for (media_type, media) in content {
                code { (media_type) } ": " (schema_type(&media["schema"])) br;
            }
        } @else {
            "none"
        }
        @if let Some(name) = shared {
            " (" a href={ "#response-" (name) } { "shared: " (name) } ")"
        }
    }
}

/// An example for a body: its own, else its schema's (when it is a reference, the component's).
fn example(media: &Value, schema: &Value) -> Option<String> {
    if !media["example"].is_null() {
        return Some(pretty(&media["example"]));
    }
    (!schema["example"].is_null()).then(|| pretty(&schema["example"]))
}

fn pretty(value: &Value) -> String {
    serde_json::to_string_pretty(value).unwrap_or_default()
}

/// A schema in a few words: a link for a reference, else its type.
fn schema_type(schema: &Value) -> Markup {
    if let Some(reference) = schema["$ref"].as_str() {
        let name = reference.rsplit('/').next().unwrap_or(reference);
        return html! { a href={ "#schema-" (name) } { (name) } };
    }
    if let Some(alternatives) = schema["oneOf"]
        .as_array()
        .or_else(|| schema["anyOf"].as_array())
        .or_else(|| schema["allOf"].as_array())
    {
        return html! {
            @for (index, alternative) in alternatives.iter().enumerate() {
                @if index > 0 { " + " }
                (schema_type(alternative))
            }
        };
    }
    let kind = match &schema["type"] {
        Value::String(kind) => kind.clone(),
        Value::Array(kinds) => kinds
            .iter()
            .filter_map(Value::as_str)
            .collect::<Vec<_>>()
            .join(" or "),
        _ => "any".to_owned(),
    };
    html! {
        @if kind.starts_with("array") {
            "array of " (schema_type(&schema["items"]))
        } @else {
            (kind)
        }
        @if let Some(format) = schema["format"].as_str() { " (" (format) ")" }
        @if let Some(values) = schema["enum"].as_array() {
            ": "
            @for (index, value) in values.iter().enumerate() {
                @if index > 0 { ", " }
                code { (value.as_str().map_or_else(|| value.to_string(), str::to_owned)) }
            }
        }
        @if let Some(pattern) = schema["pattern"].as_str() { ", matching " code { (pattern) } }
        @if let Some(minimum) = schema["minimum"].as_number() { ", at least " (minimum) }
        @if let Some(maximum) = schema["maximum"].as_number() { ", at most " (maximum) }
        @if let Some(length) = schema["maxLength"].as_number() { ", at most " (length) " characters" }
    }
}

fn schemas(document: &Value) -> Markup {
    let components = &document["components"];
    html! {
        section aria-labelledby="shared-answers" {
            h2 id="shared-answers" { "Shared answers" }
            p { "Answers that the service's layers give on many routes, listed by name in each endpoint's answers." }
            @if let Some(responses) = components["responses"].as_object() {
                @for (name, response) in responses {
                    h3 id={ "response-" (name) } { (name) }
                    p { (text(response["description"].as_str().unwrap_or(""))) }
                    @if response["headers"]["Retry-After"].is_object() {
                        p { "With the header " code { "Retry-After" } " (whole seconds)." }
                    }
                    @if let Some(example) = response["content"]["application/json"]["example"].as_object().map(|_| &response["content"]["application/json"]["example"]) {
                        pre aria-label={ "Example " (name) " answer" } { code { (pretty(example)) } }
                    }
                }
            }
        }
        section aria-labelledby="schemas" {
            h2 id="schemas" { "Schemas" }
            @if let Some(schemas) = components["schemas"].as_object() {
                @for (name, schema) in schemas {
                    h3 id={ "schema-" (name) } { (name) }
                    @if let Some(description) = schema["description"].as_str() {
                        p { (text(description)) }
                    }
                    (schema_body(schema))
                }
            }
        }
    }
}

fn schema_body(schema: &Value) -> Markup {
    let required: Vec<&str> = schema["required"]
        .as_array()
        .map(|names| names.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let parts: Vec<&Value> = schema["allOf"]
        .as_array()
        .map(|parts| parts.iter().collect())
        .unwrap_or_default();
    html! {
        @if let Some(properties) = schema["properties"].as_object() {
            table {
                thead { tr { th scope="col" { "field" } th scope="col" { "type" } th scope="col" { "required" } th scope="col" { "description" } } }
                tbody {
                    @for (name, property) in properties {
                        tr {
                            td { code { (name) } }
                            td { (schema_type(property)) }
                            td { (if required.contains(&name.as_str()) { "yes" } else { "no" }) }
                            td { (text(property["description"].as_str().unwrap_or(""))) }
                        }
                    }
                }
            }
            @if schema["additionalProperties"] == Value::Bool(false) {
                p { "No other field is accepted (" code { "400 unknown_field" } ")." }
            }
        } @else if !parts.is_empty() {
            p { "All of:" }
            @for part in parts {
                @if part["$ref"].is_string() {
                    p { (schema_type(part)) }
                } @else {
                    (schema_body(part))
                }
            }
        } @else {
            p { (schema_type(schema)) }
        }
        @if !schema["example"].is_null() {
            pre aria-label="Example" { code { (pretty(&schema["example"])) } }
        }
    }
}

/// Prose with `code` spans, as the document's descriptions write them.
fn text(prose: &str) -> Markup {
    html! {
        @for (index, part) in prose.split('`').enumerate() {
            @if index % 2 == 1 { code { (part) } } @else { (part) }
        }
    }
}

fn slug(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect()
}

fn capitalized(text: &str) -> String {
    let mut chars = text.chars();
    chars.next().map_or_else(String::new, |first| {
        first.to_uppercase().chain(chars).collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_shows_every_operation_and_loads_nothing_from_elsewhere() {
        let document = super::super::document();
        let page = render(document);
        let value = serde_json::to_value(document).unwrap();
        for operation in operations(&value) {
            assert!(
                page.contains(&format!("id=\"{}\"", operation.id)),
                "{} {} has no section",
                operation.method,
                operation.path
            );
        }
        assert!(page.contains("<code>/v1/payments/{order_no}/refunds</code>"));
        assert!(page.contains("id=\"schema-Payment\""));
        assert!(page.contains("<code>refund_exceeds_balance</code>"));
        // Shared answers show their own description, and request bodies their example.
        assert!(page.contains("<code>unauthorized</code>: no <code>Authorization: Bearer</code>"));
        assert!(page.contains("&quot;refund_no&quot;: &quot;R1&quot;"));
        // No script, and no address of another host: the page stands alone.
        assert!(!page.contains("<script"), "a script in /docs");
        assert!(!page.contains("src=\"http"), "a resource from elsewhere");
        assert!(!page.contains("href=\"http"), "a link to elsewhere");
    }

    #[test]
    fn prose_code_spans_become_code_and_text_is_escaped() {
        assert_eq!(
            text("a `b` <c>").into_string(),
            "a <code>b</code> &lt;c&gt;"
        );
    }
}
