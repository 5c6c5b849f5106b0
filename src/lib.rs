//! seqwatch: runs Elastic Security EQL detection rules against Elasticsearch, without Kibana.
//!
//! # Layout
//! - [`eql`]: the language (syntax tree, parser, evaluator, push-down); pure.
//! - [`event`]: field access over a hit's `_source`, join keys, timestamps; pure.
//! - [`rule`]: detection-rule TOML files → validated rules with parsed queries.
//! - [`window`]: run windows, catch-up and gaps; pure.
//! - [`alert`]: Kibana-shaped alerts and their ids; pure.
//! - [`config`]: the layered configuration.
//! - [`correlate`]: the sequence matcher with Elasticsearch's EQL semantics; pure.
//! - [`cli`] / [`app`]: the command line and the composition root.

pub mod alert;
pub mod app;
pub mod cli;
pub mod config;
pub mod correlate;
pub mod eql;
pub mod event;
pub mod rule;
pub mod window;
