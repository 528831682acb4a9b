//! Test support shared by the integration tests that need what
//! `paycode_adapters::testing` cannot offer without making a
//! dev-dependency a normal one: a client certificate made with rcgen.

/// A throwaway self-signed certificate and its private key (ECDSA P-256,
/// PKCS#8), generated at each call: `(certificate PEM, key PEM)`. Not a
/// secret and not a WeChat certificate; it only has to be well formed.
pub fn self_signed_client_certificate_pem() -> (String, String) {
    let rcgen::CertifiedKey { cert, key_pair } =
        rcgen::generate_simple_self_signed(vec!["paycode-test-client".to_owned()])
            .expect("self-signed certificate");
    (cert.pem(), key_pair.serialize_pem())
}
