//! WeChat Pay v2 (XML) client: wire format, signing, result judgment. See ARCHITECTURE.md.
