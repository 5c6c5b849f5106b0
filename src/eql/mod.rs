//! The EQL language: syntax tree, parser, evaluator and push-down. Pure code: no I/O, no
//! async, no knowledge of the Elasticsearch client.
//!
//! [`parse`] is the front door: text in, [`ast::Query`] or a [`ParseError`] with a span out.

pub mod ast;
pub mod error;
pub mod eval;
pub mod functions;
pub mod lexer;
pub mod parser;
pub mod pushdown;
pub mod value;

pub use error::{ParseError, SourceOrigin};

/// Parses one EQL query the way Elasticsearch does, refusing what we cannot evaluate.
pub fn parse(text: &str) -> Result<ast::Query, ParseError> {
    parser::parse(text)
}
