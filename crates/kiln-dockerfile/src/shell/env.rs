//! Variable lookups for [`super::ShellLexer`]: the [`Env`] trait and its implementations for
//! maps and `(name, value)` lists.

use std::collections::{BTreeMap, HashMap};
use std::hash::BuildHasher;

/// A lookup of variables for expansion.
///
/// `None` means unset, `Some("")` means set to the empty string; `${v-x}` and `${v:-x}` tell
/// them apart.
pub trait Env {
    /// The value of `name`, or `None` when it is unset.
    fn get(&self, name: &str) -> Option<&str>;
}

impl<E: Env + ?Sized> Env for &E {
    fn get(&self, name: &str) -> Option<&str> {
        (**self).get(name)
    }
}

impl<S: BuildHasher> Env for HashMap<String, String, S> {
    fn get(&self, name: &str) -> Option<&str> {
        HashMap::get(self, name).map(String::as_str)
    }
}

impl Env for BTreeMap<String, String> {
    fn get(&self, name: &str) -> Option<&str> {
        BTreeMap::get(self, name).map(String::as_str)
    }
}

/// A list of `(name, value)` pairs; a later definition of a name wins, as in BuildKit's
/// `EnvsFromSlice`.
impl Env for [(String, String)] {
    fn get(&self, name: &str) -> Option<&str> {
        self.iter()
            .rev()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }
}

/// A list of `(name, value)` pairs; a later definition of a name wins.
impl Env for [(&str, &str)] {
    fn get(&self, name: &str) -> Option<&str> {
        self.iter()
            .rev()
            .find(|(key, _)| *key == name)
            .map(|(_, value)| *value)
    }
}

/// An environment where every variable is unset.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EmptyEnv;

impl Env for EmptyEnv {
    fn get(&self, _name: &str) -> Option<&str> {
        None
    }
}
