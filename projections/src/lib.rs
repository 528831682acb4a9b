//! Pure read models of paycode (see ARCHITECTURE.md). Filled in by the projections issue.
