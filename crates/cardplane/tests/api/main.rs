//! Black-box tests of cardplane's HTTP surface and binary: each starts the real server on port 0
//! with a database of its own, on SQLite and on PostgreSQL.

mod auth;
mod binary;
mod cards;
mod digital_cards;
mod isolation;
mod issuer_stub;
mod notifications;
mod onboarding;
mod openapi;
mod pending;
mod races;
mod support;
