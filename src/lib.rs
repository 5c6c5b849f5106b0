//! seqwatch: runs Elastic Security EQL detection rules against Elasticsearch, without Kibana.
//!
//! # Layout
//! - [`eql`]: the language (syntax tree, parser, evaluator, push-down); pure.
//! - [`correlate`]: the sequence matcher with Elasticsearch's EQL semantics; pure.
//! - [`cli`] / [`app`]: the command line and the composition root.

pub mod app;
pub mod cli;
pub mod correlate;
pub mod eql;
