//! The console's HTML, written with `maud` (every value escaped). Each
//! function draws one page from what its handler read; none reads anything
//! itself. No inline script or style (the Content-Security-Policy forbids
//! both): the CSS and the one script are served from `/ui/assets/`.

use chrono::{DateTime, NaiveDate, SecondsFormat, Utc};
use maud::{DOCTYPE, Markup, html};
use paycode_domain::calendar::china_time;
use paycode_domain::reconciliation::ReconciliationRecorded;
use paycode_projections::PaymentView;

use super::figures::Figures;
use super::timeline::{self, MarkKind, Placed};
use crate::http::{Caller, Permission};

/// Who is signed in, for the header of every page.
#[derive(Debug)]
pub struct Nav<'a> {
    pub caller: &'a Caller,
    pub csrf_token: &'a str,
    /// Which page is shown (`overview`, `orders`, `review`, `reconciliation`).
    pub current: &'static str,
}

/// A time as people read it here: China time, to the second.
pub fn china(at: DateTime<Utc>) -> String {
    at.with_timezone(&china_time())
        .format("%Y-%m-%d %H:%M:%S")
        .to_string()
}

fn rfc3339(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Every page: the header with the pages this key may see and sign-out,
/// then `body` in `<main>`.
pub fn layout(title: &str, nav: Option<&Nav<'_>>, body: &Markup) -> Markup {
    let links: [(&str, &str, &str, Option<Permission>); 4] = [
        ("overview", "/ui/overview", "Overview", None),
        (
            "orders",
            "/ui/orders",
            "Orders",
            Some(Permission::ReadPayments),
        ),
        (
            "review",
            "/ui/review",
            "Manual review",
            Some(Permission::ReadPayments),
        ),
        (
            "reconciliation",
            "/ui/reconciliation",
            "Reconciliation",
            Some(Permission::ReadReconciliations),
        ),
    ];
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · paycode console" }
                link rel="stylesheet" href="/ui/assets/console.css";
                script src="/ui/assets/console.js" defer {}
            }
            body {
                a.skip href="#main" { "Skip to content" }
                header.top {
                    span.brand { "paycode" }
                    @if let Some(nav) = nav {
                        nav aria-label="Console pages" {
                            ul {
                                @for (name, href, text, needs) in links {
                                    @if needs.is_none_or(|permission| nav.caller.may(permission)) {
                                        li {
                                            @if name == nav.current {
                                                a href=(href) aria-current="page" { (text) }
                                            } @else {
                                                a href=(href) { (text) }
                                            }
                                        }
                                    }
                                }
                            }
                        }
                        form.signout method="post" action="/ui/sign-out" {
                            span.who {
                                (nav.caller.merchant) " · " (nav.caller.key_name)
                                " (" span #role { (nav.caller.role) } ")"
                            }
                            input type="hidden" name="csrf" value=(nav.csrf_token);
                            button type="submit" { "Sign out" }
                        }
                    }
                }
                main #main tabindex="-1" { (body) }
            }
        }
    }
}

/// The sign-in form; `problem` says why the last attempt failed.
pub fn sign_in(problem: Option<&str>) -> Markup {
    let body = html! {
        h1 { "Sign in" }
        p { "Sign in with an API key of your merchant. Its role decides what you see: "
            "auditors read; operators also resolve manual reviews. The key is checked "
            "once and never stored in the browser." }
        @if let Some(problem) = problem {
            p.problem role="alert" { (problem) }
        }
        form.signin method="post" action="/ui/sign-in" {
            label for="key" { "API key" }
            input #key type="password" name="key" autocomplete="current-password" required autofocus;
            button type="submit" { "Sign in" }
        }
    };
    layout("Sign in", None, &body)
}

/// A page that says what went wrong (404, 403, ...).
pub fn problem(nav: Option<&Nav<'_>>, title: &str, text: &str) -> Markup {
    let body = html! {
        h1 { (title) }
        p.problem role="alert" { (text) }
    };
    layout(title, nav, &body)
}

/// The overview's content.
#[derive(Debug)]
pub struct Overview {
    pub today: NaiveDate,
    /// `None` when the key may not read payments.
    pub statuses_today: Option<Vec<(String, u64)>>,
    pub figures: Figures,
}

pub fn overview(nav: &Nav<'_>, overview: &Overview) -> Markup {
    let figures = &overview.figures;
    let body = html! {
        h1 { "Overview" }
        section aria-labelledby="today" {
            h2 #today { "Orders today (" (overview.today) ", China time)" }
            @match &overview.statuses_today {
                None => p { "This key's role does not allow reading payments." },
                Some(counts) if counts.is_empty() => p { "No order yet today." },
                Some(counts) => {
                    ul.tiles {
                        @for (status, count) in counts {
                            li { a href={ "/ui/orders?status=" (status) } {
                                span.count { (count) } " " span.status { (status) }
                            } }
                        }
                    }
                }
            }
        }
        section aria-labelledby="now" {
            h2 #now { "Now" }
            ul.tiles {
                li { span.count #pending { (figures.pending_orders) } " pending orders (a step due)" }
                li { span.count { (figures.manual_review_orders) } " in manual review" }
            }
        }
        section aria-labelledby="calls" {
            h2 #calls { "Channel calls since start" }
            @if figures.calls.is_empty() {
                p { "No channel call yet." }
            } @else {
                div.scroll { table {
                    caption { "Calls by channel and API, as /metrics counts them" }
                    thead { tr {
                        th scope="col" { "Channel" } th scope="col" { "API" }
                        th scope="col" { "Calls" } th scope="col" { "Outcomes" }
                        th scope="col" { "Mean latency" } th scope="col" { "Rate-limit waits" }
                    } }
                    tbody {
                        @for ((channel, api), calls) in &figures.calls {
                            tr {
                                td { (channel) } td { (api) } td.num { (calls.total()) }
                                td { @for (outcome, count) in &calls.by_outcome {
                                    span.tag { (outcome) " " (count) } " "
                                } }
                                td.num { @if let Some(ms) = calls.mean_latency_ms() {
                                    (format!("{ms:.1} ms"))
                                } @else { "—" } }
                                td.num { (calls.rate_limit_waits) }
                            }
                        }
                    }
                } }
            }
        }
    };
    layout("Overview", Some(nav), &body)
}

/// The search form's values, echoed back.
#[derive(Debug, Default)]
pub struct OrderSearch {
    pub order_no: String,
    pub channel_trade_no: String,
    pub status: String,
    pub channel: String,
    pub from: String,
    pub to: String,
}

impl OrderSearch {
    /// The query string of this search, without the cursor.
    pub fn query(&self) -> String {
        serde_urlencoded::to_string([
            ("order_no", &self.order_no),
            ("channel_trade_no", &self.channel_trade_no),
            ("status", &self.status),
            ("channel", &self.channel),
            ("from", &self.from),
            ("to", &self.to),
        ])
        .unwrap_or_default()
    }
}

const STATUSES: [&str; 9] = [
    "paying",
    "paid",
    "revoking",
    "closed",
    "reversed",
    "revoked",
    "partially_refunded",
    "refunded",
    "manual_review",
];

pub fn orders(
    nav: &Nav<'_>,
    search: &OrderSearch,
    problem: Option<&str>,
    found: &[PaymentView],
    next_cursor: Option<&str>,
) -> Markup {
    let body = html! {
        h1 { "Orders" }
        form.search method="get" action="/ui/orders" role="search" {
            div { label for="order_no" { "Order number" }
                input #order_no name="order_no" value=(search.order_no); }
            div { label for="channel_trade_no" { "Channel trade number" }
                input #channel_trade_no name="channel_trade_no" value=(search.channel_trade_no); }
            div { label for="status" { "Status" }
                select #status name="status" {
                    option value="" { "any" }
                    @for status in STATUSES {
                        option value=(status) selected[search.status == status] { (status) }
                    }
                } }
            div { label for="channel" { "Channel" }
                select #channel name="channel" {
                    option value="" { "any" }
                    option value="wechat" selected[search.channel == "wechat"] { "wechat" }
                    option value="alipay" selected[search.channel == "alipay"] { "alipay" }
                } }
            div { label for="from" { "Created from (China date)" }
                input #from type="date" name="from" value=(search.from); }
            div { label for="to" { "Created to (China date)" }
                input #to type="date" name="to" value=(search.to); }
            div { button type="submit" { "Search" } }
        }
        @if let Some(problem) = problem {
            p.problem role="alert" { (problem) }
        }
        @if found.is_empty() {
            p #no-orders { "No order matches." }
        } @else {
            div.scroll { table #orders {
                caption { "Orders, by order number" }
                thead { tr {
                    th scope="col" { "Order" } th scope="col" { "Status" } th scope="col" { "Channel" }
                    th scope="col" { "Amount" } th scope="col" { "Payment code" }
                    th scope="col" { "Channel trade number" } th scope="col" { "Created" }
                } }
                tbody { @for view in found { tr {
                    td { a href={ "/ui/orders/" (view.order_no) } { (view.order_no) } }
                    td { span.status { (view.status.as_str()) } }
                    td { (view.channel) }
                    td.num { (view.amount) " " (view.currency.code()) }
                    td { code { (view.auth_code) } }
                    td { code { (view.channel_trade_no.as_deref().unwrap_or("—")) } }
                    td { time datetime=(rfc3339(view.created_at)) { (china(view.created_at)) } }
                } } }
            } }
        }
        @if let Some(cursor) = next_cursor {
            p { a rel="next" #next-page href={ "/ui/orders?" (search.query()) "&cursor=" (cursor) } { "Next page →" } }
        }
    };
    layout("Orders", Some(nav), &body)
}

/// One stored event as the order page shows it.
#[derive(Debug)]
pub struct EventRow {
    pub version: u64,
    pub event_type: String,
    pub at: DateTime<Utc>,
    pub recorded_at: DateTime<Utc>,
    pub status_after: Option<&'static str>,
    pub key_name: Option<String>,
    /// The channel's raw codes, when the event holds an answer.
    pub codes: Vec<(String, String)>,
    /// The event's own fields, compact JSON, for people (the internal
    /// fingerprint left out).
    pub detail: String,
    // What the chain covers, as the browser needs it to recompute the link.
    pub event_id: String,
    pub schema_version: u32,
    pub payload_hex: String,
    pub previous_hash: String,
    pub hash: String,
}

/// The resolve form's state: what was typed, and why it was refused.
#[derive(Debug, Default)]
pub struct ResolveForm {
    /// The refund the form resolves; `None` for the order itself.
    pub refund_no: Option<String>,
    pub outcome: String,
    pub channel_trade_no: String,
    pub paid_at: String,
    pub reason: String,
    pub problem: Option<String>,
}

/// What the order page shows.
#[derive(Debug)]
pub struct Story<'a> {
    pub view: &'a PaymentView,
    pub stream: &'a str,
    /// `None`: the key may not read events.
    pub events: Option<Vec<EventRow>>,
    pub timeline: Vec<Placed>,
    /// `Some` when this key may resolve and the order waits for it.
    pub resolve: Option<ResolveForm>,
    /// Refunds in manual review, each with its form when this key may resolve.
    pub refund_reviews: Vec<RefundInReview>,
    pub review_reason: Option<String>,
    pub resolved: bool,
}

fn timeline_svg(placed: &[Placed]) -> Markup {
    // Labels take turns on four rows, two above the line and two below, so
    // that marks close in time stay legible; near either end they are
    // anchored inwards so that they are never cut off.
    let anchor = |x: u32| {
        if x < 120 {
            "start"
        } else if x > timeline::WIDTH - 120 {
            "end"
        } else {
            "middle"
        }
    };
    html! {
        figure.timeline {
            svg #timeline viewBox={ "0 0 " (timeline::WIDTH) " 180" } role="img"
                aria-labelledby="timeline-title" preserveAspectRatio="xMinYMid meet" {
                title #timeline-title { "The order's events on a line to scale in time" }
                line.axis x1=(timeline::MARGIN) y1="90" x2=(timeline::WIDTH - timeline::MARGIN) y2="90" {}
                @for placed in placed.iter().filter(|p| p.mark.kind == MarkKind::Deadline) {
                    line.deadline x1=(placed.x) y1="16" x2=(placed.x) y2="170" {}
                    text.deadline-label x=(placed.x) y="12" text-anchor=(anchor(placed.x)) {
                        (placed.mark.label) " " (timeline::offset_text(placed.offset_ms))
                    }
                }
                @for (index, placed) in placed.iter().filter(|p| p.mark.kind == MarkKind::Event).enumerate() {
                    @let label_y = [26, 124, 54, 152][index % 4];
                    line.tick x1=(placed.x) y1=(if label_y < 90 { label_y + 16 } else { 90 })
                        x2=(placed.x) y2=(if label_y < 90 { 90 } else { label_y - 12 }) {}
                    circle class={ "event " (event_class(&placed.mark.label)) } cx=(placed.x) cy="90" r="6" {
                        title { (placed.mark.label) " " (timeline::offset_text(placed.offset_ms)) }
                    }
                    text.mark-label x=(placed.x) y=(label_y) text-anchor=(anchor(placed.x)) { (placed.mark.label) }
                    text.mark-time x=(placed.x) y=(label_y + 13) text-anchor=(anchor(placed.x)) { (timeline::offset_text(placed.offset_ms)) }
                }
            }
            figcaption { "Each dot is an event at its time after submission (China time in the table below); the dashed line is the deadline." }
        }
    }
}

fn event_class(label: &str) -> &'static str {
    match label {
        "QueryResult" | "UserPaying" | "PayAnswerUnknown" => "ev-query",
        "RevokeRequested"
        | "RevokeRetryScheduled"
        | "Revoked"
        | "RevokeRejected"
        | "RevokeSettled" => "ev-revoke",
        "RefundRequested" | "RefundPending" | "Refunded" | "RefundFailed" => "ev-refund",
        "StatementLineMatched" => "ev-statement",
        "ManualReviewRequired" | "OperatorResolved" => "ev-review",
        "Paid" => "ev-paid",
        _ => "ev-other",
    }
}

pub fn order(nav: &Nav<'_>, story: &Story<'_>) -> Markup {
    let view = story.view;
    let order_no = view.order_no.to_string();
    let body = html! {
        h1 { "Order " (order_no) }
        @if story.resolved {
            p.notice role="status" #resolved { "Resolved: the resolution is recorded in the order's events." }
        }
        dl.facts {
            dt { "Status" } dd { span.status #order-status { (view.status.as_str()) } }
            dt { "Amount" } dd { (view.amount) " " (view.currency.code()) }
            dt { "Channel" } dd { (view.channel) }
            dt { "Payment code" } dd { code { (view.auth_code) } }
            dt { "Subject" } dd { (view.subject) }
            dt { "Channel trade number" } dd { code { (view.channel_trade_no.as_deref().unwrap_or("—")) } }
            dt { "Created (China time)" } dd { (china(view.created_at)) }
            @if let Some(paid_at) = view.paid_at { dt { "Paid" } dd { (china(paid_at)) } }
            @if let Some(code) = &view.failure_code { dt { "Failure code" } dd { code { (code) } } }
            @if let Some(reason) = &story.review_reason { dt { "Why in review" } dd { (reason) } }
        }
        @if let Some(form) = &story.resolve {
            (resolve_form(nav, &order_no, form))
        }
        @for refund in &story.refund_reviews {
            section aria-labelledby={ "refund-" (refund.refund_no) } {
                h2 id={ "refund-" (refund.refund_no) } { "Refund " (refund.refund_no) " in manual review" }
                p { (refund.amount) " CNY; why: " (refund.reason) }
                @if let Some(form) = &refund.form {
                    (refund_resolve_form(nav, &order_no, &refund.refund_no, form))
                }
            }
        }
        @match &story.events {
            None => p { "This key's role (" (nav.caller.role) ") does not allow reading an order's events." },
            Some(events) => {
                section aria-labelledby="story" {
                    h2 #story { "Timeline" }
                    (timeline_svg(&story.timeline))
                }
                section aria-labelledby="chain" {
                    h2 #chain { "Hash chain" }
                    p { "Each event's link is SHA-256 over the previous link and the event's stored bytes. "
                        "Recompute it here with this browser's own SHA-256, or export the events and run "
                        code { "paycode verify --file" } " offline." }
                    p.actions {
                        button #verify type="button" hidden { "Verify in this browser" }
                        " "
                        a #export href={ "/ui/orders/" (order_no) "/evidence.json" } download { "Export evidence (JSON)" }
                    }
                    p #verify-result role="status" aria-live="polite" {}
                    noscript { p { "Verifying in the browser needs JavaScript; the export works without it." } }
                }
                section aria-labelledby="events" {
                    h2 #events { "Events" }
                    div.scroll { table #event-table data-stream=(story.stream) {
                        caption { "Every stored event, oldest first" }
                        thead { tr {
                            th scope="col" { "Version" } th scope="col" { "Event" } th scope="col" { "Time" }
                            th scope="col" { "Status after" } th scope="col" { "Channel codes" }
                            th scope="col" { "Chain link" } th scope="col" { "Check" }
                        } }
                        tbody { @for event in events {
                            tr.event data-version=(event.version) data-event-id=(event.event_id)
                                data-type=(event.event_type) data-schema=(event.schema_version)
                                data-payload=(event.payload_hex) data-previous=(event.previous_hash)
                                data-hash=(event.hash) {
                                td.num { (event.version) }
                                td {
                                    strong { (event.event_type) }
                                    @if let Some(key) = &event.key_name { br; small { "by key " (key) } }
                                    details { summary { "fields" } code.json { (event.detail) } }
                                }
                                td { time datetime=(rfc3339(event.at)) { (china(event.at)) }
                                     br; small { "recorded " (china(event.recorded_at)) } }
                                td { (event.status_after.unwrap_or("—")) }
                                td { @for (name, value) in &event.codes { code { (name) "=" (value) } br; } }
                                td.hash { code title=(event.hash) { (&event.hash[..16]) "…" }
                                          br; small { "after " code title=(event.previous_hash) { (&event.previous_hash[..16]) "…" } } }
                                td.check { "—" }
                            }
                        } }
                    } }
                }
            }
        }
    };
    layout(&format!("Order {order_no}"), Some(nav), &body)
}

fn resolve_form(nav: &Nav<'_>, order_no: &str, form: &ResolveForm) -> Markup {
    html! {
        section aria-labelledby="resolve" {
            h2 #resolve { "Resolve" }
            p { "Say what the channel shows for this order. The resolution is recorded as an event naming your key ("
                (nav.caller.key_name) ")." }
            @if let Some(problem) = &form.problem {
                p.problem role="alert" #resolve-problem { (problem) }
            }
            form #resolve-form method="post" action={ "/ui/orders/" (order_no) "/resolve" } {
                input type="hidden" name="csrf" value=(nav.csrf_token);
                fieldset {
                    legend { "What the channel shows" }
                    label { input type="radio" name="outcome" value="paid" checked[form.outcome == "paid"] required;
                            " paid: the customer paid, the merchant keeps the money" }
                    label { input type="radio" name="outcome" value="not_paid" checked[form.outcome == "not_paid"];
                            " not paid: the merchant does not hold the customer's money" }
                }
                label for="channel_trade_no" { "Channel trade number (with paid)" }
                input #channel_trade_no name="channel_trade_no" value=(form.channel_trade_no) maxlength="64";
                label for="paid_at" { "Paid at, RFC 3339 (with paid; default now)" }
                input #paid_at name="paid_at" value=(form.paid_at) placeholder="2026-12-03T10:00:00+08:00";
                label for="reason" { "Reason (required)" }
                textarea #reason name="reason" required maxlength="500" rows="3" { (form.reason) }
                button type="submit" { "Record the resolution" }
            }
        }
    }
}

/// A refund of the order that waits for an operator.
#[derive(Debug)]
pub struct RefundInReview {
    pub refund_no: String,
    pub amount: String,
    pub reason: String,
    /// `Some` when this key may resolve it.
    pub form: Option<ResolveForm>,
}

fn refund_resolve_form(
    nav: &Nav<'_>,
    order_no: &str,
    refund_no: &str,
    form: &ResolveForm,
) -> Markup {
    html! {
        @if let Some(problem) = &form.problem {
            p.problem role="alert" { (problem) }
        }
        form.refund-resolve method="post" action={ "/ui/orders/" (order_no) "/refunds/" (refund_no) "/resolve" } {
            input type="hidden" name="csrf" value=(nav.csrf_token);
            fieldset {
                legend { "What the channel shows for refund " (refund_no) }
                label { input type="radio" name="outcome" value="succeeded" checked[form.outcome == "succeeded"] required;
                        " succeeded: the money reached the customer" }
                label { input type="radio" name="outcome" value="failed" checked[form.outcome == "failed"];
                        " failed: the refund did not happen (its amount is refundable again)" }
            }
            label for={ "refunded_at-" (refund_no) } { "Refunded at, RFC 3339 (with succeeded; default now)" }
            input id={ "refunded_at-" (refund_no) } name="refunded_at" value=(form.paid_at);
            label for={ "reason-" (refund_no) } { "Reason (required)" }
            textarea id={ "reason-" (refund_no) } name="reason" required maxlength="500" rows="3" { (form.reason) }
            button type="submit" { "Record the resolution" }
        }
    }
}

/// One order (or one of its refunds) in the operators' queue.
#[derive(Debug)]
pub struct ReviewRow {
    pub order_no: String,
    /// The refund in review; `None` when the payment itself is.
    pub refund_no: Option<String>,
    pub channel: String,
    pub amount: String,
    pub since: DateTime<Utc>,
    pub reason: String,
    /// The channel's last raw codes (`None` when the key may not read events).
    pub last_said: Option<Vec<(String, String)>>,
}

pub fn review(nav: &Nav<'_>, rows: &[ReviewRow]) -> Markup {
    let body = html! {
        h1 { "Manual review" }
        p { "Orders automatic handling gave up on, oldest first." }
        @if rows.is_empty() {
            p #queue-empty { "Nothing waits for an operator." }
        } @else {
            div.scroll { table #queue {
                caption { "Orders waiting for an operator" }
                thead { tr {
                    th scope="col" { "Order" } th scope="col" { "Waiting since" } th scope="col" { "Why" }
                    th scope="col" { "Channel" } th scope="col" { "Amount" } th scope="col" { "What the channel last said" }
                } }
                tbody { @for row in rows { tr {
                    td {
                        a href={ "/ui/orders/" (row.order_no) } { (row.order_no) }
                        @if let Some(refund_no) = &row.refund_no { br; small { "refund " (refund_no) } }
                    }
                    td { time datetime=(rfc3339(row.since)) { (china(row.since)) } }
                    td { (row.reason) }
                    td { (row.channel) }
                    td.num { (row.amount) }
                    td { @match &row.last_said {
                        None => "(needs a key that reads events)",
                        Some(codes) if codes.is_empty() => "nothing",
                        Some(codes) => { @for (name, value) in codes { code { (name) "=" (value) } br; } }
                    } }
                } } }
            } }
        }
    };
    layout("Manual review", Some(nav), &body)
}

/// One statement day of one channel.
#[derive(Debug)]
pub struct Day {
    pub date: NaiveDate,
    pub report: Option<ReconciliationRecorded>,
}

pub fn reconciliation(nav: &Nav<'_>, channels: &[(String, Vec<Day>)]) -> Markup {
    let body = html! {
        h1 { "Reconciliation" }
        p { "Statement days of the last 30 days (China time), with the number of findings of each day's latest report." }
        @for (channel, days) in channels {
            section aria-labelledby={ "cal-" (channel) } {
                h2 id={ "cal-" (channel) } { (channel) }
                ol.calendar {
                    @for day in days { li {
                        @match &day.report {
                            None => { span.day { (day.date.format("%m-%d")) } span.none { "no statement" } }
                            Some(report) => {
                                a href={ "/ui/reconciliation/" (channel) "/" (day.date) } {
                                    span.day { (day.date.format("%m-%d")) }
                                    @if report.findings.is_empty() {
                                        span.ok { "0 findings" }
                                    } @else {
                                        span.bad { (report.findings.len()) " findings" }
                                    }
                                }
                            }
                        }
                    } }
                }
            }
        }
        section aria-labelledby="chart-title" {
            h2 #chart-title { "Matched lines and findings, last 30 days" }
            (chart(channels))
        }
    };
    layout("Reconciliation", Some(nav), &body)
}

fn chart(channels: &[(String, Vec<Day>)]) -> Markup {
    // Both channels summed per day.
    let days = channels.first().map_or(0, |(_, days)| days.len());
    let mut matched = vec![0u64; days];
    let mut findings = vec![0u64; days];
    for (_, channel_days) in channels {
        for (index, day) in channel_days.iter().enumerate() {
            if let Some(report) = &day.report {
                matched[index] += report.matched;
                findings[index] += report.findings.len() as u64;
            }
        }
    }
    let most = matched
        .iter()
        .chain(findings.iter())
        .copied()
        .max()
        .unwrap_or(0)
        .max(1);
    let height = 120u64;
    let bar = |count: u64| count * height / most;
    html! {
        figure {
            svg.chart #recon-chart viewBox={ "0 0 " (days * 20 + 20) " 160" } role="img" aria-labelledby="chart-desc" {
                title #chart-desc { "Per day: matched statement lines (first bar) and findings (second bar)" }
                line.axis x1="10" y1="130" x2=(days * 20 + 10) y2="130" {}
                @for index in 0..days {
                    @let x = index * 20 + 12;
                    rect.matched x=(x) y=(130 - bar(matched[index])) width="7" height=(bar(matched[index])) {
                        title { (matched[index]) " matched" }
                    }
                    rect.findings x=(x + 8) y=(130 - bar(findings[index])) width="7" height=(bar(findings[index])) {
                        title { (findings[index]) " findings" }
                    }
                }
                text x="10" y="150" { "30 days ago" }
                text x=(days * 20 + 10) y="150" text-anchor="end" { "today" }
            }
            figcaption { span.key-matched { "■" } " matched lines " span.key-findings { "■" } " findings (most in a day: " (most) ")" }
        }
    }
}

pub fn report(
    nav: &Nav<'_>,
    report: &ReconciliationRecorded,
    grouped: &[(String, Vec<FindingRow>)],
) -> Markup {
    let channel = report.channel.as_str();
    let title = format!("{} statement of {}", channel, report.date);
    let body = html! {
        h1 { (title) }
        dl.facts {
            dt { "Statement lines" } dd { (report.statement_lines) }
            dt { "Matched" } dd #matched { (report.matched) }
            dt { "Findings" } dd #findings-count { (report.findings.len()) }
            dt { "Revokes settled" } dd { (report.revokes_settled) }
            dt { "Statement SHA-256" } dd { code { (report.statement_sha256) } }
        }
        p { a #csv href={ "/ui/reconciliation/" (channel) "/" (report.date) "/report.csv" } download { "Download the report as CSV" } }
        @if grouped.is_empty() {
            p { "No findings: the statement and the ledger agree." }
        }
        @for (kind, rows) in grouped {
            section aria-labelledby={ "kind-" (kind) } {
                h2 id={ "kind-" (kind) } { (kind) " (" (rows.len()) ")" }
                div.scroll { table {
                    thead { tr { th scope="col" { "Order" } th scope="col" { "Refund" } th scope="col" { "Ledger" }
                                 th scope="col" { "Statement" } th scope="col" { "Detail" } } }
                    tbody { @for row in rows { tr {
                        td { @match (&row.order_no, row.linked) {
                            (Some(order_no), true) => a href={ "/ui/orders/" (order_no) } { (order_no) },
                            (Some(order_no), false) => (order_no),
                            (None, _) => "—",
                        } }
                        td { (row.refund_no.as_deref().unwrap_or("—")) }
                        td.num { (row.ledger_amount.as_deref().unwrap_or("—")) }
                        td.num { (row.statement_amount.as_deref().unwrap_or("—")) }
                        td { (row.detail) }
                    } } }
                } }
            }
        }
    };
    layout(&title, Some(nav), &body)
}

/// One finding of a report, as a row.
#[derive(Debug)]
pub struct FindingRow {
    pub order_no: Option<String>,
    /// Whether the order number is one the ledger could hold (a link).
    pub linked: bool,
    pub refund_no: Option<String>,
    pub ledger_amount: Option<String>,
    pub statement_amount: Option<String>,
    pub detail: String,
}
