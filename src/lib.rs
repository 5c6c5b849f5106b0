//! seqwatch: runs Elastic Security EQL detection rules against Elasticsearch, without Kibana.
//!
//! # Layout
//! - [`eql`]: the language (syntax tree, parser, evaluator, push-down); pure.
//! - [`event`]: field access over a hit's `_source`, join keys, timestamps; pure.
//! - [`rule`]: detection-rule TOML files → validated rules with parsed queries.
//! - [`window`]: run windows, catch-up and gaps; pure.
//! - [`fetch_plan`]: the two-step fetch (stage-1 keys, then restricted later stages); pure.
//! - [`alert`]: Kibana-shaped alerts and their ids; pure.
//! - [`entity_enrichment`]: asset criticality and entity risk on alerts, as Kibana adds them; pure.
//! - [`config`]: the layered configuration.
//! - [`correlate`]: the sequence matcher with Elasticsearch's EQL semantics; pure.
//! - [`fuzzing`]: the fuzz targets as plain functions of bytes; pure.
//! - [`generate`]: deterministic synthetic process events with ground truth.
//! - [`es`]: the only module that talks to Elasticsearch (client, index templates, bulk writes).
//! - [`cluster`]: the narrow trait a run needs of a cluster; `es` serves it over HTTP.
//! - [`run`]: one detection run (the daemon's ticks, `once`, backfill chunks) and backfill.
//! - [`daemon`]: `seqwatch run`, every rule on its schedule.
//! - [`healthcheck`]: `seqwatch healthcheck`, the container's probe of a running daemon.
//! - [`validate`]: `validate --check-es`, the cluster checked before the first run.
//! - [`cli`] / [`app`]: the command line and the composition root.

pub mod alert;
pub mod app;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod correlate;
pub mod daemon;
pub mod ecs;
pub mod engine;
pub mod entity_enrichment;
pub mod eql;
pub mod es;
pub mod event;
pub mod fetch_plan;
pub mod fuzzing;
pub mod generate;
pub mod healthcheck;
pub mod metrics;
pub mod replay;
pub mod rule;
pub mod run;
pub mod state;
pub mod telemetry;
pub mod validate;
pub mod window;
