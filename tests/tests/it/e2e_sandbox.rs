//! End to end through HTTP against the sandbox, for every test payment code
//! of both channels: the final status, the channel calls the sandbox saw,
//! the order's history, and the sandbox's own truth. The sandbox's clock is
//! the service's manual clock, so deadlines and retries do not sleep.

use paycode_adapters::channel::rate_limit::Api;
use paycode_domain::Channel;
use paycode_sandbox::SandboxOrderState;
use paycode_tests::SandboxApp;
use serde_json::Value;

const WECHAT_PREFIX: &str = "1345678901234567";
const ALIPAY_PREFIX: &str = "28456789012345678";

/// What a code must end in, per channel.
struct Expect {
    suffix: &'static str,
    status: &'static str,
    revokes: std::ops::RangeInclusive<usize>,
}

const TABLE: [Expect; 10] = [
    Expect {
        suffix: "00",
        status: "paid",
        revokes: 0..=0,
    },
    Expect {
        suffix: "01",
        status: "paid",
        revokes: 0..=0,
    },
    // WeChat's reverse answer never says whether money moved: `revoked`
    // until the statement settles it; Alipay's cancel says `close`.
    Expect {
        suffix: "02",
        status: "*",
        revokes: 1..=1,
    },
    Expect {
        suffix: "03",
        status: "closed",
        revokes: 1..=1,
    },
    Expect {
        suffix: "04",
        status: "paid",
        revokes: 0..=0,
    },
    Expect {
        suffix: "05",
        status: "paid",
        revokes: 0..=0,
    },
    // Settled by the revoke that refunded the payment (see the channel-specific checks below).
    Expect {
        suffix: "06",
        status: "*",
        revokes: 1..=1,
    },
    Expect {
        suffix: "07",
        status: "manual_review",
        revokes: 5..=5,
    },
    Expect {
        suffix: "08",
        status: "paid",
        revokes: 0..=0,
    },
    Expect {
        suffix: "09",
        status: "paid",
        revokes: 0..=0,
    },
];

async fn run_table(channel: Channel) {
    let app = SandboxApp::spawn().await;
    let prefix = if channel == Channel::Wechat {
        WECHAT_PREFIX
    } else {
        ALIPAY_PREFIX
    };
    for expect in &TABLE {
        let order = format!("{}{}", channel.as_str().to_uppercase(), expect.suffix);
        let code = format!("{prefix}{}", expect.suffix);
        let body = format!(
            r#"{{"order_no":"{order}","auth_code":"{code}","amount":"25.00","subject":"E2E"}}"#
        );
        let (status, created) = app.app.call("POST", "/v1/payments", Some(&body)).await;
        assert_eq!(status, 201, "{order}: {created}");
        let settled = settle(&app, &order).await;
        let final_status = settled["status"].as_str().unwrap().to_owned();
        if expect.status != "*" {
            assert_eq!(final_status, expect.status, "{order}: {settled}");
        }
        assert_eq!(
            app.calls(Api::Pay, &order),
            1,
            "{order}: one pay call, never resubmitted"
        );
        let revokes = app.calls(Api::Revoke, &order);
        assert!(
            expect.revokes.contains(&revokes),
            "{order}: {revokes} revokes"
        );
        let (_, history) = app
            .app
            .call("GET", &format!("/v1/payments/{order}/events"), None)
            .await;
        let events = history["events"].as_array().unwrap();
        assert_eq!(events[0]["type"], "Submitted");
        assert_eq!(
            events.last().unwrap()["status_after"],
            Value::from(final_status.as_str()),
            "{order}"
        );
        // The ledger agrees with the sandbox's truth.
        let merchant = if channel == Channel::Wechat {
            "1900000000"
        } else {
            "2021000000000000"
        };
        let truth = app
            .sandbox
            .order(channel, merchant, &order)
            .expect("the sandbox knows the order")
            .state;
        match final_status.as_str() {
            "paid" => assert!(
                matches!(truth, SandboxOrderState::Paid { .. }),
                "{order}: {truth:?}"
            ),
            "reversed" => assert!(
                matches!(truth, SandboxOrderState::Reversed { .. }),
                "{order}: {truth:?}"
            ),
            "closed" if expect.suffix != "06" => assert!(
                matches!(
                    truth,
                    SandboxOrderState::Closed { .. } | SandboxOrderState::Failed
                ),
                "{order}: {truth:?}"
            ),
            _ => {}
        }
        match expect.suffix {
            "01" | "04" | "05" | "08" => {
                assert!(
                    app.calls(Api::Query, &order) >= 1,
                    "{order}: the outcome came from a query"
                );
            }
            "03" => assert!(settled["failure_code"].is_string(), "{order}: {settled}"),
            "02" | "06" if channel == Channel::Wechat => {
                assert_eq!(final_status, "revoked", "{order}");
                assert!(
                    !matches!(truth, SandboxOrderState::Paid { .. }),
                    "{order}: {truth:?}"
                );
            }
            "02" => assert_eq!(final_status, "closed", "{order}"),
            "06" => assert_eq!(final_status, "reversed", "{order}"),
            "09" => check_slow_refund(&app, &order).await,
            _ => {}
        }
    }
}

/// Moves the manual clock a second at a time until the order has nothing left to do.
async fn settle(app: &SandboxApp, order: &str) -> Value {
    for _ in 0..600 {
        let (status, payment) = app
            .app
            .call("GET", &format!("/v1/payments/{order}"), None)
            .await;
        assert_eq!(status, 200, "{payment}");
        if payment["pending_action"].is_null() && payment["status"] != "paying" {
            return payment;
        }
        app.app.clock.advance(chrono::Duration::seconds(1));
        tokio::time::sleep(std::time::Duration::from_millis(3)).await;
    }
    panic!("{order} did not settle");
}

/// Code 09: a refund stays processing for 20 s, then succeeds.
async fn check_slow_refund(app: &SandboxApp, order: &str) {
    let refund = r#"{"refund_no":"R09","amount":"5.00","reason":"slow"}"#;
    let (status, created) = app
        .app
        .call(
            "POST",
            &format!("/v1/payments/{order}/refunds"),
            Some(refund),
        )
        .await;
    assert_eq!(
        (status, created["status"].as_str()),
        (201, Some("pending")),
        "{created}"
    );
    let payment = settle(app, order).await;
    assert_eq!(payment["status"], "partially_refunded", "{payment}");
    assert_eq!(payment["refunded_amount"], "5.00");
    assert!(
        app.refund_calls(Api::RefundQuery, "R09") >= 1,
        "the refund's success came from a query"
    );
    let (_, history) = app
        .app
        .call("GET", &format!("/v1/payments/{order}/events"), None)
        .await;
    let types: Vec<&str> = history["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    let pending = types
        .iter()
        .position(|t| *t == "RefundPending")
        .expect("acceptance was recorded");
    let refunded = types
        .iter()
        .position(|t| *t == "Refunded")
        .expect("success was recorded");
    assert!(pending < refunded, "accepted is not succeeded: {types:?}");
    let (_, refund) = app
        .app
        .call("GET", &format!("/v1/payments/{order}/refunds/R09"), None)
        .await;
    assert_eq!(refund["status"], "succeeded", "{refund}");
}

#[tokio::test]
async fn every_wechat_test_code_ends_as_the_contract_says() {
    run_table(Channel::Wechat).await;
}

#[tokio::test]
async fn every_alipay_test_code_ends_as_the_contract_says() {
    run_table(Channel::Alipay).await;
}
