//! i2v-mcp: an MCP server and CLI that turn a still image into a video through Wan 2.x
//! image-to-video providers, with a built-in free camera-motion preview.

pub mod catalog;
pub mod cli;
pub mod config;
pub mod core;
pub mod error;
pub mod files;
pub mod http;
pub mod journal;
pub mod links;
pub mod mcp;
pub mod media;
pub mod model;
pub mod oauth;
pub mod preview;
pub mod providers;
pub mod refs;
pub mod render;
pub mod validate;
pub mod watcher;
