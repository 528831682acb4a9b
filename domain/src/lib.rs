//! paycode domain
