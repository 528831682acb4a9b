//! Alipay OpenAPI client: requests, RSA2 signing, response verification, result judgment.
