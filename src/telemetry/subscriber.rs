//! The tracing subscriber, built so a reload can change its level and format in place: both sit
//! behind `tracing_subscriber::reload` layers whose handles are kept here.

use crate::config::raw::LogFormat;
use std::io::IsTerminal;
use std::sync::OnceLock;
use tracing_subscriber::layer::{Layered, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{reload, EnvFilter, Layer, Registry};

type Filtered = Layered<reload::Layer<EnvFilter, Registry>, Registry>;
type Format = Box<dyn Layer<Filtered> + Send + Sync>;

struct Handles {
    filter: reload::Handle<EnvFilter, Registry>,
    format: reload::Handle<Format, Filtered>,
}

static HANDLES: OnceLock<Handles> = OnceLock::new();

/// `RUST_LOG`, when set, overrides `logging.level` (at start and on every reload).
fn filter(level: &str) -> EnvFilter {
    EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(level))
        .unwrap_or_else(|_| EnvFilter::new("info"))
}

fn format(f: LogFormat) -> Format {
    let layer = tracing_subscriber::fmt::layer().with_writer(std::io::stdout);
    match f {
        LogFormat::Json => layer
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .boxed(),
        // Colours only for a terminal: never escape codes in files and pipes.
        LogFormat::Pretty => layer.with_ansi(std::io::stdout().is_terminal()).boxed(),
    }
}

/// Installs the global subscriber (once: tests run several gateways in one process).
pub fn init(f: LogFormat, level: &str) {
    let (filter_layer, filter_handle) = reload::Layer::new(filter(level));
    let (format_layer, format_handle) = reload::Layer::new(format(f));
    let installed = tracing_subscriber::registry()
        .with(filter_layer)
        .with(format_layer)
        .try_init()
        .is_ok();
    if installed {
        let _ = HANDLES.set(Handles {
            filter: filter_handle,
            format: format_handle,
        });
    }
}

/// A reload's `logging.level` and `logging.format`, in force for the next event.
pub fn apply(f: LogFormat, level: &str) {
    if let Some(h) = HANDLES.get() {
        let _ = h.filter.reload(filter(level));
        let _ = h.format.reload(format(f));
    }
}
