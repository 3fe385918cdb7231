//! Test helpers: an in-process albatross endpoint.
