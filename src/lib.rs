//! seqwatch: runs Elastic Security EQL detection rules against Elasticsearch, without Kibana.
//!
//! # Layout
//! - [`eql`]: the language (syntax tree, parser, evaluator, push-down); pure.
//! - [`es`]: the only module that talks to Elasticsearch (client, index templates, bulk writes).
//! - [`cli`] / [`app`]: the command line and the composition root.

pub mod app;
pub mod cli;
pub mod eql;
pub mod es;
