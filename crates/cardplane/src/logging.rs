//! Logs through `tracing`: one JSON object per line (or plain text), to stderr. Within a request
//! every line carries the request span, and so its correlation id. The level comes from
//! `CARDPLANE_LOG` (an `EnvFilter` directive, default `info`).

use crate::config::LogFormat;
use tracing_subscriber::EnvFilter;

pub fn init(format: LogFormat, default_level: &str) {
    let filter = EnvFilter::try_from_env("CARDPLANE_LOG").unwrap_or_else(|_| EnvFilter::new(default_level));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    // A second initialisation (tests start several servers in one process) is harmless.
    let _ = match format {
        LogFormat::Json => builder.json().with_current_span(true).with_span_list(false).try_init(),
        LogFormat::Text => builder.try_init(),
    };
}
