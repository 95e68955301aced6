//! Logs through `tracing`: one JSON object per line (or plain text), to stderr. Within a request
//! every line carries the request span, and so its correlation id. The level comes from
//! `CARDPLANE_LOG` (an `EnvFilter` directive, default `info`).
//!
//! JSON lines are written by `json-subscriber`, a drop-in for `tracing_subscriber`'s JSON format
//! (same fields, same shape). `tracing_subscriber`'s own cost 23,000 instructions a line under
//! callgrind: its serializer validated each of the line's ~90 fragments as UTF-8 on the way into
//! a `fmt::Write`, and every line parsed the request span's fields back from JSON. With two lines
//! a life-cycle request, that was a fifth of the server's instructions (docs/PERFORMANCE.md).

use crate::config::LogFormat;
use tracing_subscriber::EnvFilter;

pub fn init(format: LogFormat, default_level: &str) {
    let filter = EnvFilter::try_from_env("CARDPLANE_LOG").unwrap_or_else(|_| EnvFilter::new(default_level));
    // A second initialisation (tests start several servers in one process) is harmless.
    let _ = match format {
        LogFormat::Json => json_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .with_current_span(true)
            .with_span_list(false)
            .try_init(),
        LogFormat::Text => tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init(),
    };
}
