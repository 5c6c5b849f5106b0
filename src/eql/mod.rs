//! The EQL language: syntax tree, parser, evaluator and push-down. Pure code: no I/O, no
//! async, no knowledge of the Elasticsearch client.

pub mod ast;
pub mod eval;
pub mod functions;
pub mod pushdown;
pub mod value;
