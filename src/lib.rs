//! seqwatch: runs Elastic Security EQL detection rules against Elasticsearch, without Kibana.
//!
//! # Layout
//! - [`eql`]: the language (syntax tree, parser, evaluator, push-down); pure.
//! - [`rule`]: detection-rule TOML files → validated rules with parsed queries.
//! - [`cli`] / [`app`]: the command line and the composition root.

pub mod app;
pub mod cli;
pub mod eql;
pub mod event;
pub mod rule;
