//! Who is calling, and what they may do: API keys, their roles, and the one
//! table of what each role allows.
//!
//! A key is known by its SHA-256 digest only; a presented key is hashed and
//! compared with every configured digest in constant time (`subtle`). Each
//! key belongs to one merchant, has a name (what the events it causes will
//! record; `api_keys[N]` for the keys of `api_keys`) and a [`Role`]. Every
//! route declares the [`Permission`] it needs ([`allow`]); [`allows`] is the
//! table. A key outside its role answers `403 forbidden`, after
//! authentication (`401`) and the merchant's rate limit (`429`), before the
//! handler runs: a forbidden request changes nothing.
//!
//! An endpoint that changes something (the operators' resolve endpoints
//! among them) does two things:
//!
//! - its route declares what it needs, `allow(Permission::Resolve,
//!   post(handler))`: only `operator` keys and keys of `api_keys` reach the
//!   handler; a handler that must decide by itself asks [`Caller::may`];
//! - its handler takes `Extension<Caller>` and sends its command as
//!   `Command::new(id, kind).by_key(caller.key_name)`, so every event the
//!   request causes records the key's name (`key_name`), never the key.

use std::fmt;

use axum::extract::{Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::MethodRouter;
use paycode_domain::MerchantId;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::error::ApiError;

/// What a key may do. Configured keys (`[[merchants.keys]]`) have one of
/// the four named roles; the keys of `api_keys` have [`Role::Full`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Create and read payments and refunds, revoke.
    Payments,
    /// Everything `payments` may, read what `auditor` reads (what an
    /// operator decides from), and resolve manual reviews.
    Operator,
    /// Read only: payments, refunds, events, reconciliation reports.
    Auditor,
    /// Import statements and read reconciliation reports.
    Reconciliation,
    /// A key of `api_keys`: every right over its merchant. Not a role a
    /// `[[merchants.keys]]` entry can name.
    #[serde(skip)]
    Full,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Payments => "payments",
            Role::Operator => "operator",
            Role::Auditor => "auditor",
            Role::Reconciliation => "reconciliation",
            Role::Full => "full",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a route needs. Each route declares one ([`allow`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Permission {
    /// `POST /v1/payments`.
    CreatePayment,
    /// `GET /v1/payments`, `GET /v1/payments/{order_no}`.
    ReadPayments,
    /// `GET /v1/payments/{order_no}/events`.
    ReadEvents,
    /// `POST /v1/payments/{order_no}/revoke`.
    Revoke,
    /// `POST /v1/payments/{order_no}/refunds`.
    CreateRefund,
    /// `GET /v1/payments/{order_no}/refunds/{refund_no}`.
    ReadRefunds,
    /// Resolve an order or a refund in manual review:
    /// `POST /v1/payments/{order_no}/resolve`,
    /// `POST /v1/payments/{order_no}/refunds/{refund_no}/resolve`. Role
    /// `operator` (and the keys of `api_keys`) only.
    Resolve,
    /// `POST /v1/reconciliations`.
    ImportStatement,
    /// `GET /v1/reconciliations/{channel}/{date}`.
    ReadReconciliations,
}

impl Permission {
    /// Every permission, for tables and tests.
    pub const ALL: [Permission; 9] = [
        Permission::CreatePayment,
        Permission::ReadPayments,
        Permission::ReadEvents,
        Permission::Revoke,
        Permission::CreateRefund,
        Permission::ReadRefunds,
        Permission::Resolve,
        Permission::ImportStatement,
        Permission::ReadReconciliations,
    ];

    /// What the permission is for, in an error message.
    pub fn describe(self) -> &'static str {
        match self {
            Permission::CreatePayment => "creating payments",
            Permission::ReadPayments => "reading payments",
            Permission::ReadEvents => "reading an order's events",
            Permission::Revoke => "revoking payments",
            Permission::CreateRefund => "creating refunds",
            Permission::ReadRefunds => "reading refunds",
            Permission::Resolve => "resolving manual reviews",
            Permission::ImportStatement => "importing statements",
            Permission::ReadReconciliations => "reading reconciliation reports",
        }
    }
}

/// The table: whether `role` may do what `permission` guards.
pub fn allows(role: Role, permission: Permission) -> bool {
    use Permission as P;
    match role {
        Role::Full => true,
        Role::Payments => matches!(
            permission,
            P::CreatePayment | P::ReadPayments | P::Revoke | P::CreateRefund | P::ReadRefunds
        ),
        // Operators decide from an order's story (what the channel said) and
        // the day's statement, so they read what auditors read, and resolve.
        Role::Operator => {
            allows(Role::Payments, permission)
                || allows(Role::Auditor, permission)
                || permission == P::Resolve
        }
        Role::Auditor => matches!(
            permission,
            P::ReadPayments | P::ReadRefunds | P::ReadEvents | P::ReadReconciliations
        ),
        Role::Reconciliation => {
            matches!(permission, P::ImportStatement | P::ReadReconciliations)
        }
    }
}

/// The SHA-256 digest of a key: what is configured and compared, never the key.
pub type KeyDigest = [u8; 32];

/// The SHA-256 digest of `key`'s bytes.
pub fn digest(key: &str) -> KeyDigest {
    Sha256::digest(key.as_bytes()).into()
}

/// One configured API key: its digest, its merchant, its name and its role.
#[derive(Clone)]
pub struct ApiKey {
    pub sha256: KeyDigest,
    pub merchant: MerchantId,
    /// Recorded in the events the key causes; never the key itself.
    pub name: String,
    pub role: Role,
}

impl ApiKey {
    /// A key given in full (a key of `api_keys`, tests): every right.
    pub fn full(key: &str, merchant: MerchantId, name: impl Into<String>) -> ApiKey {
        ApiKey {
            sha256: digest(key),
            merchant,
            name: name.into(),
            role: Role::Full,
        }
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The digest of a short key could be guessed: it never prints either.
        f.debug_struct("ApiKey")
            .field("merchant", &self.merchant)
            .field("name", &self.name)
            .field("role", &self.role)
            .finish_non_exhaustive()
    }
}

/// The key a request is authenticated with, for handlers (a request
/// extension beside [`super::Merchant`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub merchant: MerchantId,
    /// The key's name (`api_keys[0]`, or a `[[merchants.keys]]` name): what
    /// the events its requests cause record.
    pub key_name: String,
    pub role: Role,
}

impl Caller {
    /// Whether this key's role allows `permission` ([`allows`]); for a
    /// handler that decides by itself. A route guarded by [`allow`] never
    /// needs it: a key outside its role does not reach the handler.
    pub fn may(&self, permission: Permission) -> bool {
        allows(self.role, permission)
    }
}

/// The configured key that `presented` is, if any. Every key's digest is
/// compared, in constant time, whichever matches.
pub fn find<'a>(keys: &'a [ApiKey], presented: &str) -> Option<&'a ApiKey> {
    let presented = digest(presented);
    let mut found = None;
    for key in keys {
        if bool::from(key.sha256.ct_eq(&presented)) {
            found = Some(key);
        }
    }
    found
}

/// Refuses a request whose key's role does not allow `permission`.
async fn require(State(permission): State<Permission>, request: Request, next: Next) -> Response {
    let allowed = request
        .extensions()
        .get::<Caller>()
        .is_some_and(|caller| allows(caller.role, permission));
    if allowed {
        return next.run(request).await;
    }
    let role = request
        .extensions()
        .get::<Caller>()
        .map_or("none", |caller| caller.role.as_str());
    ApiError::forbidden(format!(
        "this key's role ({role}) does not allow {}",
        permission.describe()
    ))
    .into_response()
}

/// `route` guarded by `permission`: what a route declares.
pub fn allow<S>(permission: Permission, route: MethodRouter<S>) -> MethodRouter<S>
where
    S: Clone + Send + Sync + 'static,
{
    route.route_layer(middleware::from_fn_with_state(permission, require))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_of_roles() {
        // docs/api.md: payments create and read payments and refunds and revoke; operator
        // also resolves; auditor reads (payments, refunds, events, reports); reconciliation
        // imports statements and reads reports; api_keys keys do everything.
        use Permission as P;
        let granted = |role| {
            Permission::ALL
                .into_iter()
                .filter(|permission| allows(role, *permission))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            granted(Role::Payments),
            [
                P::CreatePayment,
                P::ReadPayments,
                P::Revoke,
                P::CreateRefund,
                P::ReadRefunds
            ]
        );
        assert_eq!(
            granted(Role::Operator),
            [
                P::CreatePayment,
                P::ReadPayments,
                P::ReadEvents,
                P::Revoke,
                P::CreateRefund,
                P::ReadRefunds,
                P::Resolve,
                P::ReadReconciliations
            ]
        );
        assert_eq!(
            granted(Role::Auditor),
            [
                P::ReadPayments,
                P::ReadEvents,
                P::ReadRefunds,
                P::ReadReconciliations
            ]
        );
        assert_eq!(
            granted(Role::Reconciliation),
            [P::ImportStatement, P::ReadReconciliations]
        );
        assert_eq!(granted(Role::Full), Permission::ALL);
        // Resolving is the operator's (and api_keys'), whoever asks.
        let caller = |role| Caller {
            merchant: MerchantId::parse("shop").unwrap(),
            key_name: "k".to_owned(),
            role,
        };
        let resolvers: Vec<Role> = [
            Role::Payments,
            Role::Operator,
            Role::Auditor,
            Role::Reconciliation,
            Role::Full,
        ]
        .into_iter()
        .filter(|role| caller(*role).may(P::Resolve))
        .collect();
        assert_eq!(resolvers, [Role::Operator, Role::Full]);
    }

    #[test]
    fn keys_are_found_by_digest_and_never_print() {
        let merchant = MerchantId::parse("shop").unwrap();
        let keys = vec![
            ApiKey::full("sk_live_first_key", merchant.clone(), "api_keys[0]"),
            ApiKey {
                sha256: digest("sk_live_auditor_key"),
                merchant,
                name: "audit".to_owned(),
                role: Role::Auditor,
            },
        ];
        assert_eq!(
            find(&keys, "sk_live_auditor_key").map(|key| key.name.as_str()),
            Some("audit")
        );
        assert!(find(&keys, "sk_live_auditor_ke").is_none());
        assert!(find(&keys, "").is_none());
        let shown = format!("{keys:?}");
        assert!(!shown.contains("sk_live"), "{shown}");
        assert!(
            !shown.contains(&hex::encode(digest("sk_live_first_key"))),
            "{shown}"
        );
    }
}
