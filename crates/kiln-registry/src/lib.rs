#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]

mod auth;
mod challenge;
mod client;
mod config;
mod docker_config;
mod error;
mod progress;
mod pull;
mod push;
mod tls;
mod transport;

pub use challenge::{Challenge, parse_challenges};
pub use client::Client;
pub use config::{
    ClientConfig, DEFAULT_CHUNK_SIZE, DEFAULT_DOWNLOAD_CONCURRENCY, DEFAULT_MONOLITHIC_LIMIT,
    DEFAULT_UPLOAD_CONCURRENCY, RetryPolicy, is_loopback,
};
pub use docker_config::{Credentials, DOCKER_HUB_AUTH_KEY, DockerConfig, primary_auth_key};
pub use error::RegistryError;
pub use progress::{BlobOutcome, Direction, NoProgress, Progress, ProgressEvent};
pub use pull::{PulledImage, RawManifest, Resolved};
pub use push::PushedImage;
