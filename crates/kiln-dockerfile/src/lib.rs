#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]

mod command;
mod comments;
mod diagnostic;
mod directive;
mod dockerignore;
mod dump;
mod duration;
mod flags;
mod frontend;
mod heredoc;
mod instruction;
mod json_form;
mod limits;
mod line_parsers;
mod mount;
mod shell;
mod span;
mod syntax;

pub use command::{
    Add, ArgDecl, Command, Copy, Dockerfile, From, Healthcheck, HealthcheckCmd, HeredocSource,
    Instruction, KeyValue, NetworkMode, Onbuild, Run, SecurityMode, ShellOrExec,
};
pub use comments::{doc_comment, node_comments};
pub use diagnostic::{ParseError, ParseErrorKind};
pub use directive::{Directive, detect_syntax};
pub use dockerignore::{
    DirDecision, GlobSyntaxError, MAX_IGNORE_LINE_BYTES, MAX_PATTERN_PROGRAM_BYTES, Pattern,
    PatternError, PatternMatcher, RegexError, class_char, decode_name, display_name, encode_name,
    encode_text, escaped_byte, read_ignore_file,
};
pub use dump::{dump_buildkit_ast, go_quote};
pub use frontend::{BUILTIN_SYNTAX, syntax_warning};
pub use heredoc::Heredoc;
pub use instruction::{lower, parse};
pub use limits::{
    ExpansionBudget, MAX_EXPANDED_WORD_LENGTH, MAX_EXPANSION_DEPTH, MAX_INSTRUCTIONS,
    MAX_LINE_LENGTH, MAX_LOGICAL_LINE_LENGTH, MAX_PATTERN_STEPS, MAX_TOTAL_EXPANSION, excerpt,
};
pub use mount::{CacheSharing, CsvError, Device, Expander, Mount, MountError, MountType};
pub use shell::{
    BudgetedLexer, EXPANDING_INSTRUCTIONS, EmptyEnv, Env, ExpandError, ShellLexer, WordExpansion,
    instruction_expands,
};
pub use span::Span;
pub use syntax::{Arg, Flag, Node, SyntaxTree, Warning, parse_syntax};
