#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]

mod args;
mod cache_key;
mod checks;
mod config_edit;
mod dispatch;
mod error;
mod expose;
mod gofmt;
mod graph;
mod options;
mod outline;
mod planner;
mod rules;
mod state;
mod step;

pub use args::{BuildArgs, EnvList, PLATFORM_ARGS, is_predefined_arg, is_proxy_arg};
pub use cache_key::{
    AGGREGATE_INPUT_SUFFIX, CACHE_KEY_SCHEMA, CacheKey, CacheKeyBuilder, CacheKeyError,
    InputChange, KeyInputs, MissReason, explain_miss,
};
pub use checks::{
    BaseImage, CHECK_BUILD_ARG, Check, CheckConfig, CheckConfigError, CheckError, CheckInputs,
    CheckReport, RULES, Rule, check, rule_by_name,
};
pub use config_edit::{ChangeError, ConfigChanges, ConfigEdit, apply_config_edit};
pub use error::{PlanError, PlanWarning};
pub use expose::PortError;
pub use graph::{BaseSource, BuildGraph, PlannedStage, SourceRef, StageId};
pub use options::PlanOptions;
pub use outline::{Outline, OutlineArg, OutlineMount, SourceLines, StageTarget, outline, targets};
pub use planner::plan;
pub use state::{DEFAULT_PATH, StageBase, StageOutput, StageState};
pub use step::{Action, CopyAction, InlineFile, RunAction, RunMount, Step};
